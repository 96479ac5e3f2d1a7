"""shmlease.lock: the decorator's meanings, in one process (the multi-process
cases are in test_processes.py and test_prefork.py)."""

import threading

import pytest

import shmlease
from workers import wait_for


def test_not_run_when_held_and_dynamic_names(table, table_name):
    runs = []

    @shmlease.lock(name=lambda file_id: f"file-processing:{file_id}", table=table)
    def process(file_id):
        runs.append(file_id)
        assert table.inspect(f"file-processing:{file_id}").holder_pid > 0
        return file_id

    with shmlease.Table(table_name) as other:
        held = other.acquire("file-processing:7", ttl=30)
        assert process(7) is None  # held elsewhere: returns None without running
        assert process(8) == 8  # another name: runs
        held.release()
        assert process(7) == 7
    assert runs == [8, 7]
    assert table.inspect("file-processing:7") is None


def test_default_name_and_table_by_name(table_name):
    @shmlease.lock(table=table_name)
    def job():
        with shmlease.Table(table_name) as t:
            return [i.key for i in t.leases()]

    assert job() == [f"{__name__}.test_default_name_and_table_by_name.<locals>.job"]


def test_grace_period_keeps_others_off(table):
    runs = []

    @shmlease.lock(name="daily-report", table=table, grace_period=60)
    def report():
        runs.append(1)
        return "done"

    assert report() == "done"
    assert table.inspect("daily-report").in_grace
    assert report() is None  # within the grace period: not again
    assert runs == [1]


def test_exception_releases_at_once(table):
    @shmlease.lock(name="job", table=table, grace_period=60)
    def job(fail):
        if fail:
            raise RuntimeError("failed")
        return "ok"

    with pytest.raises(RuntimeError):
        job(True)
    assert table.inspect("job") is None  # no grace after a failure
    assert job(False) == "ok"


def test_wait_runs_after_the_holder(table, table_name):
    @shmlease.lock(name="migration", table=table, wait=True)
    def migrate():
        return "migrated"

    with shmlease.Table(table_name) as other:
        held = other.acquire("migration", ttl=60)
        out = {}
        th = threading.Thread(target=lambda: out.update(r=migrate()))
        th.start()
        wait_for(lambda: other.inspect("migration").waiters >= 1, what="the waiter")
        assert th.is_alive()
        held.release()
        th.join(30)
    assert out["r"] == "migrated"

    @shmlease.lock(name="migration", table=table, wait=0.05)
    def bounded():
        return "ran"

    with shmlease.Table(table_name) as other:
        held = other.acquire("migration", ttl=60)
        assert bounded() is None  # the wait ran out
        held.release()


def test_max_duration_is_kept_alive(table, table_name):
    @shmlease.lock(name="long", table=table, max_duration=1.5)
    def long_job():
        lease_token = table.inspect("long").fencing_token
        with shmlease.Table(table_name) as other:
            # twice max_duration, and still ours
            wait_for(lambda: table.now() > start + 3.0, what="time to pass")
            assert other.acquire("long", ttl=1) is None
        assert table.inspect("long").fencing_token == lease_token
        return "finished"

    start = table.now()
    assert long_job() == "finished"
    assert table.inspect("long") is None


def test_lost_while_running_raises(table):
    @shmlease.lock(name="job", table=table)
    def job():
        table.break_lease("job")
        return 1

    with pytest.raises(shmlease.LeaseLost) as e:
        job()
    assert e.value.code == "ESTALE"


def test_handler_form_and_bad_input(table):
    run = shmlease.lock(handler=lambda: "x", name="h", table=table)
    assert run() == "x"
    for kwargs in (dict(max_duration=0), dict(wait=-1), dict(grace_period="1"), dict(name=3),
                   dict(table=3)):
        with pytest.raises(shmlease.Error) as e:
            shmlease.lock(**kwargs)
        assert e.value.code == "EINVAL"

    @shmlease.lock(name=lambda: 5, table=table)
    def bad():
        pass

    with pytest.raises(shmlease.Error) as e:
        bad()
    assert e.value.code == "EINVAL"
