"""asyncio: waits happen off the event loop, and cancellation ends them."""

import asyncio
import multiprocessing as mp

import pytest

import shmlease
import workers

ctx = mp.get_context("spawn")


async def until(cond, what, timeout=30.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def test_wait_does_not_block_the_loop(table, table_name):
    async def main():
        with shmlease.Table(table_name) as holder:
            held = holder.acquire("k", ttl=60)
            ticks = 0
            stop = False

            async def ticker():
                nonlocal ticks
                while not stop:
                    ticks += 1
                    await asyncio.sleep(0.001)

            tick_task = asyncio.create_task(ticker())
            waiter = asyncio.create_task(table.acquire_async("k", ttl=30, wait=None))
            await until(lambda: table.inspect("k").waiters >= 1, "the waiter")
            seen = ticks
            await until(lambda: ticks >= seen + 20, "the other coroutine")  # progresses meanwhile
            assert not waiter.done()
            held.release()
            lease = await asyncio.wait_for(waiter, 30)
            stop = True
            await tick_task
            assert lease is not None and lease.fencing_token > held.fencing_token
            lease.release()

    asyncio.run(main())


def test_async_wait_for_a_holder_in_another_process(table):
    parent_end, child_end = ctx.Pipe()
    p = ctx.Process(target=workers.hold_forever, args=(table.name, "k", child_end))
    p.start()
    try:
        assert parent_end.poll(60)
        token = parent_end.recv()

        async def main():
            with pytest.raises(shmlease.NotAcquired) as e:
                async with table.lease_async("k", ttl=5, wait=0):
                    pytest.fail("acquired a held key")
            assert e.value.code == "EBUSY"
            waiter = asyncio.create_task(table.acquire_async("k", ttl=5, wait=None))
            await until(lambda: table.inspect("k").waiters >= 1, "the waiter")
            p.kill()  # the holder dies: the waiter has the key at once
            lease = await asyncio.wait_for(waiter, 30)
            assert lease.fencing_token > token
            lease.release()

        asyncio.run(main())
    finally:
        p.kill()
        p.join(30)


def test_cancel_ends_the_wait_and_holds_nothing(table, table_name):
    async def main():
        with shmlease.Table(table_name) as holder:
            held = holder.acquire("k", ttl=60)
            waiter = asyncio.create_task(table.acquire_async("k", ttl=30, wait=None))
            await until(lambda: table.inspect("k").waiters >= 1, "the waiter")
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await until(lambda: table.inspect("k").waiters == 0, "the wait to end")
            assert table._pending == 0
            held.release()
            assert table.inspect("k") is None  # the cancelled acquire took nothing
            again = holder.acquire("k", ttl=1)
            assert again is not None
            again.release()

    asyncio.run(main())


def test_timeout_via_wait_for(table, table_name):
    async def main():
        with shmlease.Table(table_name) as holder:
            held = holder.acquire("k", ttl=60)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(table.acquire_async("k", ttl=30, wait=None), 0.2)
            held.release()
            assert table.inspect("k") is None
            assert await table.acquire_async("k", ttl=30, wait=0.1) is not None

    asyncio.run(main())


def test_async_with_releases_on_exception_and_times_out(table, table_name):
    async def main():
        with pytest.raises(RuntimeError):
            async with table.lease_async("k", ttl=30, wait=1) as lease:
                assert table.inspect("k").fencing_token == lease.fencing_token
                raise RuntimeError("inside")
        assert table.inspect("k") is None
        with shmlease.Table(table_name) as holder:
            held = holder.acquire("k", ttl=60)
            with pytest.raises(shmlease.NotAcquired) as e:
                async with table.lease_async("k", ttl=30, wait=0.05):
                    pytest.fail("ran without the lease")
            assert e.value.code == "ETIMEDOUT"
            held.release()
        with pytest.raises(TypeError):
            with table.lease_async("k", ttl=1):
                pass

    asyncio.run(main())


def test_close_during_an_async_wait(table_name):
    async def main():
        t = shmlease.Table(table_name)
        with shmlease.Table(table_name) as holder:
            held = holder.acquire("k", ttl=60)
            waiter = asyncio.create_task(t.acquire_async("k", ttl=30, wait=None))
            await until(lambda: holder.inspect("k").waiters >= 1, "the waiter")
            t.close()
            with pytest.raises(shmlease.Error) as e:
                await asyncio.wait_for(waiter, 30)
            assert e.value.code == "ECANCELED"
            assert t._handle is None  # freed once the waiter left
            held.release()

    asyncio.run(main())


def test_keepalive_wait_lost(table):
    async def main():
        lease = table.acquire("k", ttl=1)
        ka = lease.keep_alive(interval=0.05)
        lost = asyncio.create_task(ka.wait_lost())
        await asyncio.sleep(0)
        assert not lost.done()
        table.break_lease("k")
        assert await asyncio.wait_for(lost, 30) == "ESTALE"
        ka.stop()

    asyncio.run(main())


def test_lock_decorator_on_a_coroutine(table, table_name):
    calls = []

    @shmlease.lock(name="job", table=table, max_duration=1.5)
    async def job(x):
        calls.append(x)
        # longer than max_duration: the keepalive keeps the lease
        start = table.now()
        with shmlease.Table(table_name) as other:
            while table.now() < start + 2.5:
                await asyncio.sleep(0.1)
                assert other.acquire("job", ttl=1) is None
        return x * 2

    async def main():
        assert await job(21) == 42
        assert table.inspect("job") is None
        with shmlease.Table(table_name) as other:
            held = other.acquire("job", ttl=30)
            assert await job(1) is None  # held: not run
            held.release()

    asyncio.run(main())
    assert calls == [21]
