"""Helpers and worker functions for the multi-process tests (importable by
spawned processes)."""

import os
import signal
import time

import shmlease


def wait_for(cond, timeout=30.0, what="condition"):
    """Polls cond() until it is true; fails after a generous timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def record(dirpath, name, line):
    """Appends a line to dirpath/name (O_APPEND: whole lines, across processes)."""
    fd = os.open(os.path.join(dirpath, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def lines(dirpath, name):
    try:
        with open(os.path.join(dirpath, name)) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def coordinate(table_name, outdir, items, barrier, worker):
    """A server worker: races for the once-only job, then shares per-item jobs.

    Each job is recorded in a file while its lease is held; a check inside
    the critical section asserts nobody else holds the key meanwhile."""
    with shmlease.Table(table_name) as t:
        barrier.wait(60)
        lease = t.acquire("startup:migrate", ttl=30, metadata={"worker": worker})
        if lease is not None:
            record(outdir, "startup", f"{worker} {lease.fencing_token}")
            # done: nobody runs it again for a minute
            assert lease.release_after(60)
        for i in range(items):
            lease = t.acquire(f"item:{i}", ttl=30)
            if lease is None:
                continue
            info = t.inspect(f"item:{i}")
            assert info.holder_pid == os.getpid()
            if not lines(outdir, f"item-{i}"):  # not processed yet
                record(outdir, f"item-{i}", f"{worker} {lease.fencing_token}")
            assert lease.release()
    return 0


def hold_forever(table_name, key, ready):
    """Acquires key for 60 s, says so, and waits to be killed."""
    t = shmlease.Table(table_name)
    lease = t.acquire(key, ttl=60)
    assert lease is not None
    ready.send(lease.fencing_token)
    while True:
        signal.pause()


def hold_then_renew(table_name, key, conn):
    """Acquires key, reports, renews when told and reports the answer."""
    with shmlease.Table(table_name) as t:
        lease = t.acquire(key, ttl=60)
        conn.send(lease.fencing_token)
        assert conn.recv() == "renew"
        conn.send(lease.renew())
        conn.send(lease.check())


def raise_inside(table_name, key, conn):
    """A with block that raises: the key must be free afterwards."""
    with shmlease.Table(table_name) as t:
        try:
            with t.lease(key, ttl=60) as lease:
                conn.send(("held", lease.fencing_token))
                assert conn.recv() == "raise"
                raise RuntimeError("boom")
        except RuntimeError as e:
            conn.send(("raised", str(e)))
        assert conn.recv() == "exit"


def locked_once(table_name, outdir, barrier, worker, results):
    """Runs a lock-decorated job: once for all workers (grace period)."""

    @shmlease.lock(name="nightly-report", table=table_name, grace_period=60)
    def report():
        record(outdir, "report", str(worker))
        return "ran"

    @shmlease.lock(name=lambda item: f"file-processing:{item}", table=table_name, grace_period=60)
    def process(item):
        record(outdir, f"file-{item}", str(worker))
        return item

    barrier.wait(60)
    ran = report()
    done = [process(i) for i in range(12)]
    results.put((ran, sum(1 for d in done if d is not None)))


def locked_then_sleep(table_name, conn):
    """Runs a lock function (max_duration 1.5 s) that says so and then sleeps."""

    @shmlease.lock(name="frozen", table=table_name, max_duration=1.5)
    def job():
        conn.send(shmlease.Table(table_name).inspect("frozen").fencing_token)
        while True:
            time.sleep(1)

    job()


def redis_worker(table_name, backend, outdir, items, barrier, worker):
    """coordinate() on a table kept by a Redis server."""
    with shmlease.Table(table_name, backend=backend) as t:
        barrier.wait(60)
        lease = t.acquire("startup:migrate", ttl=30)
        if lease is not None:
            record(outdir, "startup", f"{worker} {lease.fencing_token}")
            assert lease.release_after(60)
        for i in range(items):
            lease = t.acquire(f"item:{i}", ttl=30)
            if lease is None:
                continue
            if not lines(outdir, f"item-{i}"):
                record(outdir, f"item-{i}", f"{worker} {lease.fencing_token}")
            assert lease.release()


def hold_forever_backend(table_name, backend, key, ready):
    """hold_forever() on a table kept by a Redis server."""
    t = shmlease.Table(table_name, backend=backend)
    lease = t.acquire(key, ttl=60)
    assert lease is not None
    ready.send(lease.fencing_token)
    while True:
        signal.pause()
