#!/usr/bin/env python3
"""Management queries at scale, for scripts/bench-admin-scale.sh.

  bench_admin.py seed DB TENANT COUNT   add COUNT synthetic audit records
                                        for TENANT straight into a SQLite
                                        store (the shape the sidecar writes;
                                        the hash chains are not real)
  bench_admin.py measure BASE ADMIN_TOKEN TENANT_ADMIN_TOKEN TENANT
                                        time each management query, one
                                        request at a time over one
                                        keep-alive connection

Standard library only.
"""

import hashlib
import http.client
import json
import random
import sqlite3
import statistics
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

ACTIONS = [("Read", 60), ("Update", 10), ("Search", 15), ("Share", 5),
           ("Delete", 3), ("CreateDocument", 5), ("ViewUsage", 2)]


def seed(db, tenant, count):
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    rng = random.Random(7)
    names = [a for a, _ in ACTIONS]
    weights = [w for _, w in ACTIONS]
    # Spread over the last 90 days, oldest first.
    end = datetime.now(timezone.utc) - timedelta(minutes=5)
    start = end - timedelta(days=90)
    step = (end - start) / count
    expires = int((end + timedelta(days=7 * 365)).timestamp())
    batch = []
    began = time.time()
    for i in range(count):
        ts = start + step * i
        user = f"u{min(int(rng.paretovariate(1.2)) - 1, 4999)}"
        action = rng.choices(names, weights)[0]
        allow = rng.random() < 0.8
        event_id = f"seed-{i:09d}"
        record = {
            "eventId": event_id,
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
            "tenantId": tenant,
            "userId": user,
            "action": action,
            "resource": f'CedarGate::Document::"d{rng.randrange(100000):07d}"',
            "details": {
                "decision": "Allow" if allow else "Deny",
                "determiningPolicies": ["sharing.owner" if allow else "clearance.cap"],
                "errors": [],
                "policyRevision": "seed",
                "dataAgeMs": 0,
            },
            "ipAddress": "10.0.0.1",
            "userAgent": "bench",
            "success": True,
            "errorMessage": None,
            "expiresAt": expires,
            "writerId": "seed",
            "seq": i,
            "prevHash": "",
            "hash": hashlib.sha256(event_id.encode()).hexdigest(),
        }
        sortable = ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        batch.append((tenant, event_id, sortable, expires, json.dumps(record)))
        if len(batch) == 50000:
            con.executemany("INSERT OR IGNORE INTO audit (tenant_id, event_id, ts, expires_at, record)"
                            " VALUES (?, ?, ?, ?, ?)", batch)
            con.commit()
            batch.clear()
            done = i + 1
            if done % 1000000 == 0:
                print(f"  {done} records, {done / (time.time() - began):.0f}/s", flush=True)
    if batch:
        con.executemany("INSERT OR IGNORE INTO audit (tenant_id, event_id, ts, expires_at, record)"
                        " VALUES (?, ?, ?, ?, ?)", batch)
        con.commit()
    con.close()
    print(f"seeded {count} audit records for {tenant} in {time.time() - began:.0f} s")


class Client:
    def __init__(self, base):
        u = urllib.parse.urlparse(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)

    def get(self, path, token):
        started = time.perf_counter()
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {token}"})
        r = self.conn.getresponse()
        body = r.read()
        took = time.perf_counter() - started
        if r.status != 200:
            raise SystemExit(f"GET {path}: {r.status} {body[:300]!r}")
        return took, json.loads(body) if body[:1] in (b"{", b"[") else None


def report(name, times, note=""):
    times = sorted(times)
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000
    print(f"| {name} | {len(times)} | {p(0.5):.1f} | {p(0.99):.1f} | {max(times) * 1000:.1f} | {note} |")


def measure(base, admin, tenant_admin, tenant):
    c = Client(base)
    print("| query | requests | p50 ms | p99 ms | max ms | notes |")
    print("|---|---|---|---|---|---|")
    report("GET /v1/tenants/{id}", [c.get(f"/v1/tenants/{tenant}", tenant_admin)[0] for _ in range(200)])
    report("GET /v1/tenants/{id}/usage",
           [c.get(f"/v1/tenants/{tenant}/usage", tenant_admin)[0] for _ in range(200)])
    # Tenants, pages of 100 to the end.
    times, cursor, seen = [], None, 0
    while True:
        path = "/v1/tenants?limit=100" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
        took, body = c.get(path, admin)
        times.append(took)
        seen += len(body["tenants"])
        cursor = body.get("next")
        if not cursor:
            break
    report("GET /v1/tenants?limit=100, every page", times, f"{seen} tenants")
    # The biggest tenant's documents, pages of 100 to the end; its deleted ones.
    for name, query in [("", "live"), ("&deleted=only", "soft-deleted")]:
        times, cursor, seen = [], None, 0
        while len(times) < 5000:
            path = f"/v1/tenants/{tenant}/documents?limit=100{name}" + (
                f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
            took, body = c.get(path, tenant_admin)
            times.append(took)
            seen += len(body["documents"])
            cursor = body.get("next")
            if not cursor:
                break
        report(f"GET …/documents?limit=100{name}, every page", times, f"{seen} {query} documents")
    # Audit logs: newest page, a time range, each filter, deep cursors.
    audit = f"/v1/tenants/{tenant}/audit-logs"
    now = datetime.now(timezone.utc)
    day = lambda d: urllib.parse.quote((now - timedelta(days=d)).isoformat().replace("+00:00", "Z"))
    for name, query in [
        ("newest 100", "?limit=100"),
        ("one day, 45 days ago", f"?limit=100&from={day(46)}&to={day(45)}"),
        ("user=u3 (a common user)", "?limit=100&user=u3"),
        ("user=u4000 (a rare user)", "?limit=100&user=u4000"),
        ("action=Delete", "?limit=100&action=Delete"),
        ("decision=deny", "?limit=100&decision=deny"),
    ]:
        times, returned = [], 0
        for _ in range(30):
            took, body = c.get(audit + query, tenant_admin)
            times.append(took)
            returned = len(body["events"])
        report(f"GET …/audit-logs {name}", times, f"{returned} records in the first page")
    # Deep: follow the cursor for 500 pages of 100.
    times, cursor = [], None
    for _ in range(500):
        took, body = c.get(audit + "?limit=100" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else ""),
                           tenant_admin)
        times.append(took)
        cursor = body.get("next")
        if not cursor:
            break
    report("GET …/audit-logs, 500 pages deep", times, "cursor followed")
    # A rare user's records: pages to collect 100 of them.
    times, cursor, found = [], None, 0
    while found < 100 and len(times) < 2000:
        took, body = c.get(audit + "?limit=100&user=u4000" + (
            f"&cursor={urllib.parse.quote(cursor)}" if cursor else ""), tenant_admin)
        times.append(took)
        found += len(body["events"])
        cursor = body.get("next")
        if not cursor:
            break
    report("user=u4000, pages until 100 records", times,
           f"{found} records after {len(times)} requests, {sum(times):.1f} s in all")


if __name__ == "__main__":
    if sys.argv[1] == "seed":
        seed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        measure(*sys.argv[2:6])
