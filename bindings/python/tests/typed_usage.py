"""Typed use of the package: mypy --strict checks it with the package (test_typing.py)."""

import asyncio
import shmlease

def f(t: shmlease.Table) -> int:
    lease = t.acquire("k", ttl=1.5, wait=None, metadata={"a": 1})
    if lease is None:
        return 0
    ok: bool = lease.renew()
    with t.lease("k", 2) as l2:
        x: int = l2.fencing_token
    return lease.fencing_token

async def g(t: shmlease.Table) -> None:
    async with t.lease_async("k", 1) as l:
        y: float = l.expires_at

@shmlease.lock(name=lambda i: f"x{i}")
def h(i: int) -> int:
    return i
