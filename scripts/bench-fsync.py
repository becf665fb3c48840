"""What a durable audit commit costs the disk: N times, write SIZE bytes and
fdatasync, once appending to a growing file and once overwriting blocks the
file already has (how the audit spool writes since segments are extended
with zeros ahead of the records); then two alternatives to the buffered
write + fdatasync: O_DSYNC writes, and O_DIRECT | O_DSYNC writes of whole
4 KiB blocks. Prints CPU and wall time per call (and, for the first two,
the distribution of one call's wall time: a durable answer waits for up to
two commits, so the disk's own tail bounds the audit's); run it on the disk
the spool lives on.

usage: python3 scripts/bench-fsync.py [DIR] [N] [SIZE]
"""

import mmap
import os
import sys
import tempfile
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "."
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
SIZE = int(sys.argv[3]) if len(sys.argv) > 3 else 11000


def run(prealloc):
    fd, path = tempfile.mkstemp(dir=DIR, prefix=".bench-fsync-")
    try:
        if prealloc:
            os.write(fd, b"\0" * (N * SIZE))
            os.fdatasync(fd)
            os.lseek(fd, 0, 0)
        buf = b"x" * SIZE
        calls = []
        cpu, wall = time.process_time(), time.time()
        for _ in range(N):
            t = time.perf_counter()
            os.write(fd, buf)
            os.fdatasync(fd)
            calls.append(time.perf_counter() - t)
        cpu, wall = time.process_time() - cpu, time.time() - wall
        calls.sort()
        pct = lambda p: calls[min(N - 1, int(p * N))] * 1e3
        print(f"{'overwrite' if prealloc else 'append':9}  cpu/op {cpu / N * 1e6:7.1f} us  wall/op {wall / N * 1e6:7.1f} us"
              f"  (a call: p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, p99.9 {pct(0.999):.2f} ms, max {calls[-1] * 1e3:.2f} ms)")
    finally:
        os.close(fd)
        os.unlink(path)


def run_flags(name, flags, block):
    """Overwrites preallocated blocks with writes opened with `flags`
    (no fdatasync: the flags make each write durable)."""
    size = -(-SIZE // 4096) * 4096 if block else SIZE
    fd, path = tempfile.mkstemp(dir=DIR, prefix=".bench-fsync-")
    try:
        os.write(fd, b"\0" * (N * size))
        os.fdatasync(fd)
        os.close(fd)
        fd = os.open(path, os.O_WRONLY | flags)
        buf = mmap.mmap(-1, size)  # page-aligned, as O_DIRECT needs
        buf.write(b"x" * size)
        cpu, wall = time.process_time(), time.time()
        for i in range(N):
            os.pwrite(fd, buf, i * size)
        cpu, wall = time.process_time() - cpu, time.time() - wall
        print(f"{name:9}  cpu/op {cpu / N * 1e6:7.1f} us  wall/op {wall / N * 1e6:7.1f} us")
    finally:
        os.close(fd)
        os.unlink(path)


for _ in range(2):
    run(False)
    run(True)
    run_flags("o_dsync", os.O_DSYNC, False)
    run_flags("o_direct", os.O_DIRECT | os.O_DSYNC, True)
