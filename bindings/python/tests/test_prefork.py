"""A gunicorn-style prefork server: the parent opens the table, then forks
its workers (os.fork), which coordinate through the inherited handle."""

import json
import os
import signal
import traceback

import shmlease
from workers import lines, record

WORKERS = 4
ITEMS = 24


def worker(table, parent_lease, outdir, go_fd, n):
    """Body of a forked worker; its exit status is the verdict."""
    # The child holds none of its parent's leases: the copied value is stale...
    assert parent_lease.renew() is False
    # ...and the parent still holds the key.
    assert table.acquire("parent:config", ttl=1) is None
    assert os.read(go_fd, 1) == b"g"  # all workers start together

    @shmlease.lock(name="startup:warm-cache", table=table, grace_period=60)
    def warm_cache():
        record(outdir, "startup", str(n))

    @shmlease.lock(name=lambda i: f"item:{i}", table=table, grace_period=60)
    def handle(i):
        info = table.inspect(f"item:{i}")
        assert info.holder_pid == os.getpid()
        record(outdir, f"item-{i}", json.dumps([n, info.fencing_token]))
        return i

    warm_cache()
    handled = [i for i in range(ITEMS) if handle(i) is not None]
    record(outdir, "handled", json.dumps([n, handled]))


def test_prefork_workers_share_one_table(table, tmp_path):
    outdir = str(tmp_path)
    parent_lease = table.acquire("parent:config", ttl=60)
    r, w = os.pipe()
    pids = []
    for n in range(WORKERS):
        pid = os.fork()
        if pid == 0:  # the worker: never returns into pytest
            status = 1
            try:
                os.close(w)
                worker(table, parent_lease, outdir, r, n)
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        pids.append(pid)
    os.close(r)
    try:
        os.write(w, b"g" * WORKERS)
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
    finally:
        os.close(w)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert all(os.WIFEXITED(s) and os.WEXITSTATUS(s) == 0 for s in statuses), statuses
    assert len(lines(outdir, "startup")) == 1  # the startup job ran once
    handled = sorted(i for line in lines(outdir, "handled") for i in json.loads(line)[1])
    assert handled == list(range(ITEMS))  # every item once, by exactly one worker
    for i in range(ITEMS):
        assert len(lines(outdir, f"item-{i}")) == 1
    # the parent's lease was never disturbed by its children
    assert parent_lease.check() and parent_lease.release()
