"""What a durable audit commit costs the disk: N times, write SIZE bytes and
fdatasync, once appending to a growing file and once overwriting blocks the
file already has (how the audit spool writes since segments are extended
with zeros ahead of the records). Prints CPU and wall time per call; run it
on the disk the spool lives on.

usage: python3 scripts/bench-fsync.py [DIR] [N] [SIZE]
"""

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
        cpu, wall = time.process_time(), time.time()
        for _ in range(N):
            os.write(fd, buf)
            os.fdatasync(fd)
        cpu, wall = time.process_time() - cpu, time.time() - wall
        print(f"{'overwrite' if prealloc else 'append':9}  cpu/op {cpu / N * 1e6:7.1f} us  wall/op {wall / N * 1e6:7.1f} us")
    finally:
        os.close(fd)
        os.unlink(path)


for _ in range(2):
    run(False)
    run(True)
