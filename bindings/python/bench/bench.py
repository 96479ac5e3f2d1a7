#!/usr/bin/env python3
"""Uncontended acquire+release from Python, beside Python's usual file locks
and the C library's own figure, in one run.

    SHMLEASE_LIBRARY=build/libshmlease.so python3 bindings/python/bench/bench.py \
        [--c-bench build/bench/shmlease-bench] [--quick]

Each row: the median and p99 over 20 batches of the mean time of one
acquire plus one release (a batch is N back-to-back pairs, N sized to about
10 ms), as the C benchmark measures its rows. Markdown on stdout.
"""

import argparse
import ctypes
import fcntl
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
if not os.environ.get("SHMLEASE_LIBRARY"):
    built = os.path.join(ROOT, "build", "libshmlease.so")
    if os.path.exists(built):
        os.environ["SHMLEASE_LIBRARY"] = built

import shmlease  # noqa: E402
from shmlease import _native  # noqa: E402


def measure(pair, batches, batch_s):
    """(median, p99) in ns of one call of pair()."""
    n = 1
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.05:  # warm up and size N
        for _ in range(n):
            pair()
        n *= 2
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pair()
    per = (time.perf_counter_ns() - t0) / n
    n = max(10, int(batch_s * 1e9 / max(per, 1)))
    values = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            pair()
        values.append((time.perf_counter_ns() - t0) / n)
    values.sort()
    return values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.99))], n


def c_figure(path):
    """shmlease's row of the C benchmark (ns), or None."""
    if not path or not os.path.exists(path):
        return None
    with tempfile.TemporaryDirectory() as out:
        r = subprocess.run([path, "--quick", "--no-redis", "--scenarios", "uncontended", "--out", out],
                           capture_output=True, text=True, timeout=600)
    m = re.search(r"^\| shmlease \| shmlease_acquire\(wait_ms=0\) \+ shmlease_release \| ([0-9.,]+) (ns|us)",
                  r.stdout, re.M)
    if not m:
        return None
    v = float(m.group(1).replace(",", ""))
    return v * 1000 if m.group(2) == "us" else v


def fmt(ns):
    return f"{ns / 1000:,.2f} us" if ns >= 10000 else f"{ns:,.0f} ns"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c-bench", default=os.path.join(ROOT, "build", "bench", "shmlease-bench"))
    ap.add_argument("--quick", action="store_true", help="10 batches of ~2 ms")
    a = ap.parse_args()
    batches, batch_s = (10, 0.002) if a.quick else (20, 0.01)

    rows = []
    name = f"pybench-{os.getpid()}"
    tmp = tempfile.mkdtemp(prefix="pybench-")
    try:
        with shmlease.Table(name) as t:
            def sh_pair():
                t.acquire("bench", 60).release()

            def sh_with():
                with t.lease("bench", 60):
                    pass

            h = t._hp
            o = _native.AcquireOpts(ttl_ms=60000)
            s = _native.LeaseStruct()
            acq, rel = _native.fast.acquire, _native.fast.release
            ob, sb = ctypes.byref(o), ctypes.byref(s)

            def raw_pair():
                acq(h, b"bench", ob, sb)
                rel(h, sb)

            rows.append(("shmlease (Python)", "t.acquire(key, 60).release()", measure(sh_pair, batches, batch_s)))
            rows.append(("shmlease (Python)", "with t.lease(key, 60): pass", measure(sh_with, batches, batch_s)))
            rows.append(("shmlease (ctypes alone)", "the two C calls alone (structs made once)",
                         measure(raw_pair, batches, batch_s)))

        path = os.path.join(tmp, "flock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)

        def flock_pair():
            fcntl.flock(fd, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_UN)

        rows.append(("fcntl.flock", "LOCK_EX, LOCK_UN on an open file", measure(flock_pair, batches, batch_s)))
        os.close(fd)
        try:
            import filelock

            fl = filelock.FileLock(os.path.join(tmp, "filelock.lock"))

            def filelock_pair():
                fl.acquire()
                fl.release()

            rows.append((f"filelock {filelock.__version__}", "FileLock.acquire(), release()",
                         measure(filelock_pair, batches, batch_s)))
        except ImportError:
            rows.append(("filelock", "not installed (Debian: python3-filelock)", None))
    finally:
        shmlease.unlink(name)
        for f in os.listdir(tmp):
            os.unlink(os.path.join(tmp, f))
        os.rmdir(tmp)

    c = c_figure(a.c_bench)
    print("## Python: uncontended acquire+release, one process, one key\n")
    print(f"- Python {sys.version.split()[0]} ({sys.executable}), libshmlease {shmlease.library_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"- median and p99 over {batches} batches (mean of N back-to-back pairs each)\n")
    print("| peer | call | median | p99 | vs C shmlease | N/batch |")
    print("|---|---|---:|---:|---:|---:|")
    if c:
        print(f"| shmlease (C) | shmlease-bench --quick, uncontended | {fmt(c)} | | 1.00x | |")
    for peer, call, m in rows:
        if m is None:
            print(f"| {peer} | {call} | | | | |")
            continue
        med, p99, n = m
        ratio = f"{med / c:.1f}x" if c else "-"
        print(f"| {peer} | {call} | {fmt(med)} | {fmt(p99)} | {ratio} | {n} |")
    if c:
        py = rows[0][2][0]
        print(f"\nOverhead of the binding over C: {fmt(py - c)} per acquire+release "
              f"({py / c:.1f}x the C call).")


if __name__ == "__main__":
    main()
