"""One process: the API's promises, bad input, and the ABI of the structs."""

import ctypes
import signal
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest

import shmlease
from shmlease import _native
from workers import wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_acquire_release_and_tokens(table):
    before = table.now()
    a = table.acquire("job", ttl=10)
    assert isinstance(a, shmlease.Lease)
    assert isinstance(a.fencing_token, int) and a.fencing_token > 0
    # about ttl from now, never later than now + ttl
    assert before + 10 - 0.5 <= a.expires_at <= table.now() + 10
    assert 0 < a.remaining() <= 10
    assert a.check()
    assert a.release() is True
    assert a.check() is False
    assert a.release() is False  # spent: nothing changes
    b = table.acquire("job", ttl=10)
    assert b.fencing_token > a.fencing_token
    b.release()


def test_default_clock_is_time_monotonic(table):
    lease = table.acquire("k", ttl=5)
    assert abs(lease.expires_at - (time.monotonic() + 5)) < 1.0
    lease.release()


def test_held_key_is_none_for_another_owner(table, table_name):
    with shmlease.Table(table_name) as other:
        held = table.acquire("k", ttl=30)
        assert other.acquire("k", ttl=30) is None
        t0 = time.monotonic()
        assert other.acquire("k", ttl=30, wait=0.2) is None  # ETIMEDOUT
        assert time.monotonic() - t0 >= 0.15
        held.release()
        got = other.acquire("k", ttl=30)
        assert got is not None and got.fencing_token > held.fencing_token
        got.release()


def test_wait_gets_the_key_when_released(table, table_name):
    with shmlease.Table(table_name) as other:
        held = table.acquire("k", ttl=60)
        out = {}
        th = threading.Thread(target=lambda: out.update(lease=other.acquire("k", ttl=5, wait=None)))
        th.start()
        wait_for(lambda: table.inspect("k").waiters >= 1, what="a waiter")
        assert th.is_alive()
        held.release()
        th.join(30)
        assert out["lease"] is not None and out["lease"].fencing_token > held.fencing_token
        out["lease"].release()


def test_renew_false_once_lost_for_ever(table):
    lease = table.acquire("k", ttl=30)
    assert lease.renew() is True
    assert lease.renew(ttl=timedelta(seconds=40)) is True
    assert table.break_lease("k") is True
    assert lease.renew() is False
    assert lease.check() is False
    again = table.acquire("k", ttl=30)  # the key is taken again: still lost
    assert lease.renew() is False
    assert again.release()
    assert table.break_lease("k") is False  # free


def test_manual_clock_expiry(table_name):
    clock = shmlease.ManualClock()
    with shmlease.Table(table_name, clock=clock) as t:
        lease = t.acquire("k", ttl=1)
        assert lease.expires_at_ms == clock.now_ms() + 1000
        clock.advance(0.5)
        assert lease.renew() is True  # now deadline = now + 1 s
        clock.advance(1.0)
        assert t.inspect("k") is None
        assert lease.renew() is False
        other = t.acquire("k", ttl=1)
        assert other.fencing_token > lease.fencing_token


def test_lease_context_releases(table):
    with table.lease("k", ttl=30, wait=1) as lease:
        assert table.inspect("k").holder_pid == os.getpid()
        assert table.inspect("k").fencing_token == lease.fencing_token
    assert table.inspect("k") is None


def test_lease_context_releases_on_exception(table):
    with pytest.raises(KeyError):
        with table.lease("k", ttl=30):
            raise KeyError("inside")
    assert table.inspect("k") is None


def test_lease_context_not_acquired(table, table_name):
    with shmlease.Table(table_name) as other:
        held = other.acquire("k", ttl=30)
        with pytest.raises(shmlease.NotAcquired) as e:
            with table.lease("k", ttl=30):
                pytest.fail("ran without the lease")
        assert e.value.code == "EBUSY"
        with pytest.raises(shmlease.NotAcquired) as e:
            with table.lease("k", ttl=30, wait=0.05):
                pytest.fail("ran without the lease")
        assert e.value.code == "ETIMEDOUT" and isinstance(e.value, shmlease.Error)
        held.release()


def test_lease_context_reports_a_lost_lease(table):
    with pytest.raises(shmlease.LeaseLost) as e:
        with table.lease("k", ttl=30):
            table.break_lease("k")
    assert e.value.code == "ESTALE"
    # an exception from the block wins over the loss
    with pytest.raises(ZeroDivisionError):
        with table.lease("k", ttl=30):
            table.break_lease("k")
            1 / 0


def test_release_after_inside_the_block(table, table_name):
    with table.lease("once", ttl=30) as lease:
        assert lease.release_after(30)
    info = table.inspect("once")
    assert info.in_grace and info.holder_pid == 0
    with shmlease.Table(table_name) as other:
        assert other.acquire("once", ttl=30) is None


def test_lease_object_as_context_manager(table):
    lease = table.acquire("k", ttl=30)
    with lease:
        assert lease.check()
    assert table.inspect("k") is None


def test_metadata_kinds(table):
    for value, stored in (
        (b"\x00\x01raw", b"\x00\x01raw"),
        ("texte é", "texte é".encode()),
        ({"worker": 3, "why": "report"}, b'{"worker":3,"why":"report"}'),
    ):
        lease = table.acquire("m", ttl=30, metadata=value)
        info = table.inspect("m")
        assert info.metadata == stored
        lease.release()
    lease = table.acquire("m", ttl=30, metadata={"a": [1, 2]})
    assert table.inspect("m").metadata_json() == {"a": [1, 2]}
    lease.release()
    lease = table.acquire("m", ttl=30, metadata=b"x" * 128)  # the limit fits
    lease.release()


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(metadata=b"x" * 129), "129 bytes"),
        (dict(metadata={"k": "v" * 130}), "as JSON"),
        (dict(metadata=object()), "metadata must be"),
        (dict(metadata={"k": object()}), "JSON"),
        (dict(ttl=0), "ttl"),
        (dict(ttl=-1), "ttl"),
        (dict(ttl="10"), "ttl must be a number"),
        (dict(ttl=math.nan), "NaN"),
        (dict(wait=-1), "wait"),
        (dict(wait=True), "bool"),
        (dict(limit=2), "shared"),
        (dict(shared=True, limit=5000), "limit"),
    ],
)
def test_bad_input_is_einval_and_changes_nothing(table, kwargs, words):
    args = dict(ttl=30)
    args.update(kwargs)
    before = table.stats()
    with pytest.raises(shmlease.Error) as e:
        table.acquire("k", **args)
    assert e.value.code == "EINVAL" and e.value.errno == 22
    assert isinstance(e.value, ValueError) and isinstance(e.value, OSError)
    assert words in str(e.value)
    assert table.inspect("k") is None
    after = table.stats()
    assert after.acquisitions == before.acquisitions and after.fencing_counter == before.fencing_counter


def test_bad_keys(table):
    with pytest.raises(shmlease.Error) as e:
        table.acquire("", ttl=1)
    assert e.value.code == "EINVAL"
    with pytest.raises(shmlease.Error) as e:
        table.acquire("a\0b", ttl=1)
    assert e.value.code == "EINVAL"
    with pytest.raises(shmlease.Error) as e:
        table.acquire("k" * 128, ttl=1)
    assert e.value.code == "ENAMETOOLONG"
    with pytest.raises(shmlease.Error) as e:
        table.acquire(42, ttl=1)
    assert e.value.code == "EINVAL"
    assert table.acquire("k" * 127, ttl=1).release()


def test_bad_tables(table_name):
    for name in ("a/b", "", ".."):
        with pytest.raises(shmlease.Error) as e:
            shmlease.Table(name)
        assert e.value.code == "EINVAL"
    with pytest.raises(shmlease.Error) as e:
        shmlease.Table(table_name, capacity=(1 << 24) + 1)
    assert e.value.code == "EINVAL"
    with pytest.raises(shmlease.Error) as e:
        shmlease.Table(table_name, mode=0o1777)
    assert e.value.code == "EINVAL"
    with pytest.raises(shmlease.Error) as e:
        shmlease.Table(table_name, create=False)
    assert e.value.code == "ENOENT"
    assert not os.path.exists(f"/dev/shm/shmlease.{table_name}")  # nothing created


def test_backend_is_passed_to_the_library(table_name):
    # The local build refuses any backend (EPROTONOSUPPORT); a build with
    # the Redis backend cannot reach a socket that does not exist. Either
    # way the table is not opened locally.
    with pytest.raises(shmlease.Error) as e:
        shmlease.Table(table_name, backend="unix:///nonexistent-dir/redis.sock")
    assert e.value.code not in ("EINVAL", "E?")
    assert not os.path.exists(f"/dev/shm/shmlease.{table_name}")
    with pytest.raises(shmlease.Error) as e:
        shmlease.Table(table_name, backend=12)
    assert e.value.code == "EINVAL"


def test_closed_table(table_name):
    t = shmlease.Table(table_name)
    lease = t.acquire("k", ttl=30)
    t.close()
    t.close()  # a no-op
    assert t.closed
    with pytest.raises(shmlease.Error) as e:
        t.acquire("k", ttl=1)
    assert e.value.code == "EBADF" and "closed" in str(e.value)
    with pytest.raises(shmlease.Error) as e:
        lease.renew()
    assert e.value.code == "EBADF"
    with shmlease.Table(table_name) as t2:  # close released the lease
        assert t2.inspect("k") is None


def test_shared_leases_and_limit(table, table_name):
    with shmlease.Table(table_name) as o1, shmlease.Table(table_name) as o2:
        r1 = table.acquire("db", ttl=30, shared=True, limit=2)
        r2 = o1.acquire("db", ttl=30, shared=True, limit=2)
        assert r1 and r2
        assert o2.acquire("db", ttl=30, shared=True, limit=2) is None  # at most 2
        assert o2.acquire("db", ttl=30) is None  # no writer beside readers
        info = table.inspect("db")
        assert info.shared and info.limit == 2 and info.holders == 2
        assert len([i for i in table.leases() if i.key == "db"]) == 2
        with pytest.raises(shmlease.Error) as e:
            o2.acquire("db", ttl=30, shared=True, limit=3)
        assert e.value.code == "EDOM"
        r1.release()
        r2.release()
        w = o2.acquire("db", ttl=30, fair=True)
        assert w is not None and not table.inspect("db").shared
        w.release()


def test_keep_alive_renews_and_signals_a_loss(table):
    lease = table.acquire("k", ttl=1.5)
    start = table.now()
    with lease.keep_alive(interval=0.05) as ka:
        wait_for(lambda: ka.renewals >= 4 and table.now() > start + 2.5, what="renewals")
        assert lease.check()  # kept past the 1.5 s TTL
        assert ka.status() is None and not ka.lost
        table.break_lease("k")
        wait_for(lambda: ka.lost, what="the loss")
        assert ka.status() == "ESTALE"
        import select

        assert select.select([ka.fd], [], [], 0)[0] == [ka.fd]
    assert lease.renew() is False


def test_keep_alive_bad_input(table):
    lease = table.acquire("k", ttl=1)
    with pytest.raises(shmlease.Error) as e:
        lease.keep_alive(ttl=1, interval=2)
    assert e.value.code == "EINVAL"
    ka = lease.keep_alive()
    with pytest.raises(shmlease.Error) as e:
        lease.keep_alive()
    assert e.value.code == "EEXIST"
    assert lease.release() and ka.status() == "ECANCELED"


def test_stats_and_leases(table):
    a = table.acquire("a", ttl=30, metadata="m")
    b = table.acquire("b", ttl=30)
    keys = sorted(i.key for i in table.leases())
    assert keys == ["a", "b"]
    st = table.stats()
    assert st.held == 2 and st.acquisitions >= 2 and st.fencing_counter >= b.fencing_token
    a.release(), b.release()


def test_errors_carry_errno_names():
    e = shmlease.Error(16, "x", "EBUSY")
    assert e.code == "EBUSY" and e.errno == 16 and "[EBUSY]" in str(e)
    assert issubclass(shmlease.Error, OSError)
    assert issubclass(shmlease.LeaseLost, shmlease.Error)
    assert issubclass(shmlease.NotAcquired, shmlease.Error)


def test_library_not_found_is_clear(tmp_path):
    missing = str(tmp_path / "nowhere" / "libshmlease.so")
    env = dict(os.environ, SHMLEASE_LIBRARY=missing)
    code = "import shmlease\ntry:\n shmlease.Table('x')\nexcept shmlease.LibraryNotFoundError as e:\n print(e)\n"
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    out = subprocess.run([sys.executable, "-c", code], env=dict(env, PYTHONPATH=src),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert missing in out.stdout and "SHMLEASE_LIBRARY" in out.stdout


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_structs_match_the_header(tmp_path):
    """Every size and offset of the ctypes structs, against the header compiled."""
    structs = {
        "shmlease_options": _native.Options,
        "shmlease_acquire_opts": _native.AcquireOpts,
        "shmlease_lease": _native.LeaseStruct,
        "shmlease_info": _native.InfoStruct,
        "shmlease_stats": _native.StatsStruct,
        "shmlease_keepalive_opts": _native.KeepaliveOpts,
        "shmlease_keepalive_stats": _native.KeepaliveStats,
    }
    lines = ["#include <shmlease.h>", "#include <stdio.h>", "#include <stddef.h>", "int main(void) {"]
    expect = []
    for cname, py in structs.items():
        lines.append(f'printf("%zu\\n", sizeof({cname}));')
        expect.append(ctypes.sizeof(py))
        for fname, _ in py._fields_:
            lines.append(f'printf("%zu\\n", offsetof({cname}, {fname}));')
            expect.append(getattr(py, fname).offset)
    lines.append("return 0; }")
    src = tmp_path / "abi.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "abi"
    subprocess.run(["cc", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)], check=True)
    got = [int(x) for x in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()]
    assert got == expect


def test_version():
    assert shmlease.library_version().startswith("1.")
    assert shmlease.__version__ == "1.4.0"


def test_wait_forever_with_math_inf(table, table_name):
    with shmlease.Table(table_name) as other:
        held = other.acquire("k", ttl=60)
        out = {}
        th = threading.Thread(target=lambda: out.update(lease=table.acquire("k", ttl=5, wait=math.inf)))
        th.start()
        wait_for(lambda: other.inspect("k").waiters >= 1, what="the waiter")
        held.release()
        th.join(30)
        assert out["lease"] is not None
        out["lease"].release()


INTERRUPTED = r"""
import os, signal, sys, shmlease
t = shmlease.Table(sys.argv[1])
print("waiting", flush=True)
try:
    t.acquire("k", ttl=60, wait=None)
    print("acquired", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
sys.stdin.readline()
"""


def test_sync_wait_interrupted_by_ctrl_c_holds_nothing(table):
    held = table.acquire("k", ttl=60)
    src = os.path.join(os.path.dirname(__file__), "..", "src")
    p = subprocess.Popen([sys.executable, "-c", INTERRUPTED, table.name], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=src))
    try:
        assert p.stdout.readline() == "waiting\n"
        wait_for(lambda: table.inspect("k").waiters >= 1, what="the waiter")
        p.send_signal(signal.SIGINT)
        assert p.stdout.readline() == "interrupted\n"
        wait_for(lambda: table.inspect("k").waiters == 0, what="the wait to end")
        held.release()
        assert table.inspect("k") is None  # the interrupted acquire took nothing
        p.stdin.write("\n")
        p.stdin.flush()
        assert p.wait(30) == 0
    finally:
        p.kill()
        p.wait(30)


def test_library_found_through_the_loader_path(tmp_path):
    lib = os.environ["SHMLEASE_LIBRARY"]
    env = {k: v for k, v in os.environ.items() if k != "SHMLEASE_LIBRARY"}
    env["LD_LIBRARY_PATH"] = os.path.dirname(lib)
    env["PYTHONPATH"] = os.path.join(os.path.dirname(__file__), "..", "src")
    code = "import shmlease; print(shmlease.library_version())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == shmlease.library_version()


def test_open_options(table_name):
    with shmlease.Table(table_name, capacity=64, mode=0o640, open_timeout=2.5) as t:
        assert t.stats().capacity >= 64
        assert os.stat(f"/dev/shm/shmlease.{table_name}").st_mode & 0o777 == 0o640
        lease = t.acquire("k", ttl=30, metadata="by t")
        with pytest.raises(shmlease.Error) as e:
            shmlease.Table(table_name, exclusive=True)
        assert e.value.code == "EEXIST"
        with shmlease.Table(table_name, readonly=True) as ro:
            info = ro.inspect("k")
            assert info.holder_alive is True and info.metadata == b"by t"
            with pytest.raises(shmlease.Error) as e:
                ro.acquire("other", ttl=1)
            assert e.value.code == "EPERM"
        with shmlease.Table(table_name, create=False) as again:
            assert again.acquire("k", ttl=1) is None
        lease.release()
