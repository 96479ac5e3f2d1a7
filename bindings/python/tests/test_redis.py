"""The same API on the Redis backend (backend= a Redis URL), against a
redis-server these tests start on a Unix socket. Skipped when redis-server
is missing or the library was built without the backend."""

import asyncio
import multiprocessing as mp
import shutil
import subprocess
import threading
import uuid

import pytest

import shmlease
import workers
from workers import lines, wait_for

ctx = mp.get_context("spawn")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server not installed")
    d = tmp_path_factory.mktemp("redis")
    sock = d / "redis.sock"
    p = subprocess.Popen([server, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700",
                          "--save", "", "--appendonly", "no", "--dir", str(d)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: sock.exists() or p.poll() is not None, what="redis-server")
        assert p.poll() is None, "redis-server exited"
        url = f"unix://{sock}"
        name = f"probe-{uuid.uuid4().hex[:8]}"
        try:
            shmlease.Table(name, backend=url).close()
        except shmlease.Error as e:
            if e.code == "EPROTONOSUPPORT":
                pytest.skip("libshmlease built without the Redis backend")
            raise
        shmlease.unlink(name, backend=url)
        yield url
    finally:
        p.terminate()
        p.wait(30)


@pytest.fixture
def rtable(redis_url):
    name = f"pytest-{uuid.uuid4().hex[:12]}"
    with shmlease.Table(name, backend=redis_url) as t:
        yield t
    shmlease.unlink(name, backend=redis_url)


def test_acquire_renew_release_break(rtable, redis_url):
    a = rtable.acquire("job", ttl=30, metadata={"by": "pytest"})
    assert a is not None and a.fencing_token > 0
    with shmlease.Table(rtable.name, backend=redis_url) as other:
        assert other.acquire("job", ttl=30) is None
        info = other.inspect("job")
        assert info.fencing_token == a.fencing_token and info.metadata_json() == {"by": "pytest"}
        assert a.renew() and a.check()
        assert other.break_lease("job")
        assert a.renew() is False and a.check() is False  # lost for ever
        b = other.acquire("job", ttl=30)
        assert b.fencing_token > a.fencing_token
        assert b.release() and b.release() is False
    with rtable.lease("job", ttl=30) as lease:
        assert rtable.inspect("job").fencing_token == lease.fencing_token
    assert rtable.inspect("job") is None


def test_what_the_backend_does_not_offer(rtable):
    with pytest.raises(shmlease.Error) as e:
        rtable.acquire("k", ttl=1, shared=True)
    assert e.value.code == "EOPNOTSUPP"
    with pytest.raises(shmlease.Error) as e:
        shmlease.Table(rtable.name, backend=rtable.backend, clock=shmlease.ManualClock())
    assert e.value.code == "EINVAL"


def test_wait_and_async_wait(rtable, redis_url):
    with shmlease.Table(rtable.name, backend=redis_url) as other:
        held = other.acquire("k", ttl=60)
        out = {}
        th = threading.Thread(target=lambda: out.update(lease=rtable.acquire("k", ttl=5, wait=30)))
        th.start()
        wait_for(lambda: other.inspect("k").waiters >= 1, what="the waiter")
        held.release()
        th.join(60)
        assert out["lease"] is not None and out["lease"].fencing_token > held.fencing_token
        out["lease"].release()

        async def main():
            held = other.acquire("k", ttl=60)
            waiter = asyncio.create_task(rtable.acquire_async("k", ttl=5, wait=None))
            ticks = 0
            while other.inspect("k").waiters < 1:
                ticks += 1
                await asyncio.sleep(0.005)
            held.release()
            lease = await asyncio.wait_for(waiter, 30)
            assert lease.fencing_token > held.fencing_token
            lease.release()

        asyncio.run(main())


def test_killed_holder_of_this_host_is_reclaimed(rtable):
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=workers.hold_forever_backend, args=(rtable.name, rtable.backend, "k", child_end))
    p.start()
    try:
        assert parent_end.poll(60)
        token = parent_end.recv()
        assert rtable.acquire("k", ttl=60) is None
        p.kill()
        p.join(30)
        # a holder of this host that died is proved dead: no 60 s TTL to wait
        lease = rtable.acquire("k", ttl=5, wait=30)
        assert lease is not None and lease.fencing_token > token
        lease.release()
    finally:
        p.kill()
        p.join(30)


def test_processes_coordinate_through_redis(rtable, tmp_path):
    n, items = 3, 12
    barrier = ctx.Barrier(n)
    procs = [ctx.Process(target=workers.redis_worker,
                         args=(rtable.name, rtable.backend, str(tmp_path), items, barrier, w))
             for w in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert len(lines(tmp_path, "startup")) == 1
    for i in range(items):
        assert len(lines(tmp_path, f"item-{i}")) == 1
