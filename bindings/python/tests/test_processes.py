"""Several processes (multiprocessing, spawned: separate interpreters that
open the table by name) coordinating through one table."""

import multiprocessing as mp
import os
import signal
import time

import shmlease
import workers
from workers import lines, wait_for

ctx = mp.get_context("spawn")


def _join(procs):
    for p in procs:
        p.join(90)
        assert p.exitcode == 0, f"worker {p.pid} exit {p.exitcode}"


def test_once_only_and_per_item_jobs(table_name, tmp_path):
    n, items = 4, 24
    shmlease.Table(table_name).close()
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=workers.coordinate, args=(table_name, str(tmp_path), items, barrier, w))
             for w in range(n)]
    for p in procs:
        p.start()
    _join(procs)
    assert len(lines(tmp_path, "startup")) == 1  # the once-only job: once
    owners = set()
    for i in range(items):
        done = lines(tmp_path, f"item-{i}")
        assert len(done) == 1, (i, done)  # each item exactly once
        owners.add(done[0].split()[0])
    with shmlease.Table(table_name) as t:
        assert t.inspect("startup:migrate").in_grace  # nobody runs it again yet
        assert t.acquire("startup:migrate", ttl=1) is None


def test_killed_holder_is_reclaimed_at_once(table):
    parent_end, child_end = ctx.Pipe()
    holder = ctx.Process(target=workers.hold_forever, args=(table.name, "search-index", child_end))
    holder.start()
    try:
        assert parent_end.poll(60), "holder did not start"
        token = parent_end.recv()
        assert table.inspect("search-index").holder_pid == holder.pid
        assert table.acquire("search-index", ttl=60) is None
        # a waiter (30 s) shorter than the holder's TTL (60 s): only the
        # reclaim of a dead holder's lease can satisfy it
        out = {}
        import threading

        th = threading.Thread(target=lambda: out.update(lease=table.acquire("search-index", ttl=60, wait=30)))
        th.start()
        wait_for(lambda: table.inspect("search-index").waiters >= 1, what="the waiter")
        os.kill(holder.pid, signal.SIGKILL)
        th.join(60)
        lease = out["lease"]
        assert lease is not None, "the dead holder's lease was not reclaimed"
        assert lease.fencing_token > token
        info = table.inspect("search-index")
        assert info.holder_pid == os.getpid() and info.fencing_token == lease.fencing_token
        assert table.stats().reclaimed_dead >= 1
        lease.release()
    finally:
        holder.kill()
        holder.join(30)


def test_killed_holder_try_reclaims(table):
    parent_end, child_end = ctx.Pipe()
    holder = ctx.Process(target=workers.hold_forever, args=(table.name, "k", child_end))
    holder.start()
    assert parent_end.poll(60)
    token = parent_end.recv()
    holder.kill()
    holder.join(30)
    # a try sees the death within 1 ms of it (no TTL wait)
    lease = wait_for(lambda: table.acquire("k", ttl=60), timeout=30, what="the reclaim")
    assert lease.fencing_token > token


def test_renew_false_after_a_break_from_another_process(table):
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=workers.hold_then_renew, args=(table.name, "k", child_end))
    p.start()
    assert parent_end.poll(60)
    token = parent_end.recv()
    info = table.inspect("k")
    assert info.holder_pid == p.pid and info.fencing_token == token
    assert table.break_lease("k")
    parent_end.send("renew")
    assert parent_end.recv() is False  # renew
    assert parent_end.recv() is False  # check
    p.join(60)
    assert p.exitcode == 0
    lease = table.acquire("k", ttl=1)
    assert lease.fencing_token > token


def test_context_manager_releases_on_exception_in_a_worker(table):
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=workers.raise_inside, args=(table.name, "k", child_end))
    p.start()
    assert parent_end.poll(60)
    what, token = parent_end.recv()
    assert what == "held" and table.inspect("k").holder_pid == p.pid
    parent_end.send("raise")
    assert parent_end.recv() == ("raised", "boom")
    assert table.inspect("k") is None  # released while the worker lives on
    lease = table.acquire("k", ttl=1)
    assert lease is not None and lease.fencing_token > token
    parent_end.send("exit")
    p.join(60)
    assert p.exitcode == 0


def test_lock_decorator_once_across_processes(table_name, tmp_path):
    n = 3
    shmlease.Table(table_name).close()
    barrier = ctx.Barrier(n)
    q = ctx.Queue()
    procs = [ctx.Process(target=workers.locked_once, args=(table_name, str(tmp_path), barrier, w, q))
             for w in range(n)]
    for p in procs:
        p.start()
    results = [q.get(timeout=90) for _ in procs]
    _join(procs)
    assert sorted(r[0] for r in results if r[0]) == ["ran"]  # one worker ran it
    assert len(lines(tmp_path, "report")) == 1
    assert sum(r[1] for r in results) == 12
    for i in range(12):
        assert len(lines(tmp_path, f"file-{i}")) == 1


def test_lock_of_a_frozen_process_lapses_after_max_duration(table):
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=workers.locked_then_sleep, args=(table.name, child_end))
    p.start()
    try:
        assert parent_end.poll(60)
        token = parent_end.recv()
        # alive and running: the keepalive keeps it well past max_duration
        t0 = table.now()
        wait_for(lambda: table.now() > t0 + 2.5, what="time to pass")
        assert table.acquire("frozen", ttl=1) is None
        os.kill(p.pid, signal.SIGSTOP)  # frozen: nobody renews it any more
        lease = table.acquire("frozen", ttl=5, wait=30)
        assert lease is not None and lease.fencing_token > token
        lease.release()
    finally:
        p.kill()
        p.join(30)
