#!/usr/bin/env python3
"""Small writes and point reads of a SQLite store at two page sizes.

    python3 scripts/bench-page-size.py STORE.db [ROUNDS]

STORE.db is a store made by `cedargate-admin import` (and `migrate`). The
script copies it twice, rewrites the copies (VACUUM) with pages of 4 KiB
(SQLite's default, what earlier versions made stores with) and 16 KiB
(what a new store gets), then, alternating, times on each:

- a management write: one transaction that updates a tenant's record and
  appends to the change log, committed with `synchronous = FULL` (what
  the store does for every management write);
- a point read of a random document on a connection with a 256 KiB page
  cache, so most reads miss it (the sidecar reads the store only when its
  own cache misses).

Times include Python's own cost, the same for both sizes.
"""

import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time


def copy_with_pages(src, dst, size):
    shutil.copy(src, dst)
    c = sqlite3.connect(dst, isolation_level=None)
    for s in ("PRAGMA journal_mode = DELETE", f"PRAGMA page_size = {size}", "VACUUM",
              "PRAGMA journal_mode = WAL"):
        c.execute(s)
    c.close()


def bench(path, writes=300, reads=20000):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA synchronous = FULL")
    tenants = [r[0] for r in c.execute("SELECT tenant_id FROM tenants")]
    docs = list(c.execute("SELECT tenant_id, document_id FROM documents"))
    rng = random.Random(1)
    t = time.perf_counter()
    for i in range(writes):
        tenant = rng.choice(tenants)
        c.execute("BEGIN IMMEDIATE")
        c.execute("UPDATE tenants SET record = record WHERE tenant_id = ?", (tenant,))
        c.execute("INSERT INTO changes (at_ms, change) VALUES (?, ?)", (i, f'{{"tenant":"{tenant}"}}'))
        c.execute("COMMIT")
    write_ms = (time.perf_counter() - t) / writes * 1000
    r = sqlite3.connect(path)
    r.execute("PRAGMA cache_size = -256")
    t = time.perf_counter()
    for _ in range(reads):
        r.execute("SELECT record FROM documents WHERE tenant_id = ? AND document_id = ?",
                  rng.choice(docs)).fetchone()
    read_us = (time.perf_counter() - t) / reads * 1e6
    size = c.execute("PRAGMA page_size").fetchone()[0]
    print(f"pages of {size:>5} bytes: management write {write_ms:.3f} ms, point read {read_us:.1f} µs")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tempfile.TemporaryDirectory() as work:
        paths = []
        for size in (4096, 16384):
            p = os.path.join(work, f"p{size}.db")
            copy_with_pages(sys.argv[1], p, size)
            paths.append(p)
        for _ in range(rounds):
            for p in paths:
                bench(p)


if __name__ == "__main__":
    main()
