"""``shmlease.lock``: run a function on one process at a time (a decorator)."""

from __future__ import annotations

import asyncio
import functools
import threading
from typing import Any, Callable, Dict, Optional, Tuple, TypeVar, Union, cast, overload

from ._errors import LeaseLost, invalid
from ._table import Lease, Metadata, Seconds, Table, _to_ms

F = TypeVar("F", bound=Callable[..., Any])

_tables: Dict[Tuple[str, Optional[str]], Table] = {}
_tables_lock = threading.Lock()


def _open(name: str, backend: Optional[str]) -> Table:
    """One handle per table name in a process (a forked child keeps using it)."""
    with _tables_lock:
        t = _tables.get((name, backend))
        if t is None or t.closed:
            t = Table(name, backend)
            _tables[(name, backend)] = t
        return t


def _lost(key: str, lease: Lease) -> LeaseLost:
    import errno

    return LeaseLost(
        errno.ESTALE,
        f"lock {key!r} (fencing token {lease.fencing_token}) was lost while the "
        "function ran: its work may have overlapped another holder's",
        "ESTALE",
    )


@overload
def lock(
    *,
    name: Union[str, Callable[..., str], None] = None,
    handler: None = None,
    table: Union[Table, str] = "locks",
    backend: Optional[str] = None,
    wait: Union[bool, Seconds, None] = False,
    max_duration: Seconds = 60.0,
    grace_period: Optional[Seconds] = None,
    metadata: Metadata = None,
) -> Callable[[F], F]: ...


@overload
def lock(
    *,
    name: Union[str, Callable[..., str], None] = None,
    handler: F,
    table: Union[Table, str] = "locks",
    backend: Optional[str] = None,
    wait: Union[bool, Seconds, None] = False,
    max_duration: Seconds = 60.0,
    grace_period: Optional[Seconds] = None,
    metadata: Metadata = None,
) -> F: ...


def lock(
    *,
    name: Union[str, Callable[..., str], None] = None,
    handler: Optional[Callable[..., Any]] = None,
    table: Union[Table, str] = "locks",
    backend: Optional[str] = None,
    wait: Union[bool, Seconds, None] = False,
    max_duration: Seconds = 60.0,
    grace_period: Optional[Seconds] = None,
    metadata: Metadata = None,
) -> Any:
    """Makes a function run on at most one process of the host at a time.

    ::

        @shmlease.lock(name=lambda file_id: f"file-processing:{file_id}",
                       grace_period=300)
        def process_file(file_id): ...

    name: the lease's key, or a function of the call's arguments returning
    it (default: the function's module and qualified name). table: a Table,
    or the name of a table opened (once per process) when first needed.

    wait: False (default) -- a call that finds the lock held returns None
    without running the function; True or None -- wait for ever, then run;
    seconds -- wait at most that long, then run, or return None if the lock
    is still held. A waiter runs the function too once it has the lock (use
    grace_period without wait for "once, then not again for a while").

    max_duration: the lease's TTL (seconds), renewed in the background while
    the function runs: a process that dies frees the lock at once, one that
    is frozen frees it after max_duration.

    grace_period: after a successful run, nobody runs it again for that
    many seconds (the key stays held by nobody). A run that raises releases
    the lock at once, so that another process may try.

    Returns the function's result, or None when it did not run. Raises
    LeaseLost after the function returned if the lock was lost while it ran
    (broken, or the process frozen past max_duration). Works on ``async def``
    functions too (the wait is then off the event loop).

    ``handler=fn`` applies it at once: ``run = shmlease.lock(handler=fn, ...)``.
    """
    if name is not None and not isinstance(name, str) and not callable(name):
        raise invalid("name must be a str or a function of the arguments returning one")
    if not isinstance(table, (Table, str)):
        raise invalid("table must be a Table or a table name")
    if wait is True or wait is None:
        wait_s: Optional[Seconds] = None
    elif wait is False:
        wait_s = 0
    else:
        wait_s = wait
    # Check the numbers now (an Error at decoration, not at the first call).
    from ._table import _wait_ms

    _wait_ms(wait_s)
    _to_ms(max_duration, "max_duration", positive=True)
    if grace_period is not None:
        _to_ms(grace_period, "grace_period", positive=False)

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise invalid("lock() decorates a function")
        default_key = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"

        def key_of(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> str:
            if name is None:
                return default_key
            if isinstance(name, str):
                return name
            k = name(*args, **kwargs)
            if not isinstance(k, str):
                raise invalid(f"name function returned {type(k).__name__}, not a str")
            return k

        def table_of() -> Table:
            return table if isinstance(table, Table) else _open(table, backend)

        def finish(key: str, lease: Lease, lost_while_running: bool) -> None:
            if grace_period:
                kept = lease.release_after(grace_period)
            else:
                kept = lease.release()
            if lost_while_running or not kept:
                raise _lost(key, lease)

        if asyncio.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def arun(*args: Any, **kwargs: Any) -> Any:
                key = key_of(args, kwargs)
                lease = await table_of().acquire_async(key, max_duration, wait_s, metadata)
                if lease is None:
                    return None
                try:
                    ka = lease.keep_alive()
                except BaseException:
                    lease.release()
                    raise
                try:
                    result = await fn(*args, **kwargs)
                except BaseException:
                    ka.stop()
                    lease.release()
                    raise
                lost = ka.lost
                ka.stop()
                finish(key, lease, lost)
                return result

            return cast(F, arun)

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            key = key_of(args, kwargs)
            lease = table_of().acquire(key, max_duration, wait_s, metadata)
            if lease is None:
                return None
            try:
                ka = lease.keep_alive()
            except BaseException:
                lease.release()
                raise
            try:
                result = fn(*args, **kwargs)
            except BaseException:
                ka.stop()
                lease.release()
                raise
            lost = ka.lost
            ka.stop()
            finish(key, lease, lost)
            return result

        return cast(F, run)

    if handler is not None:
        return decorate(handler)
    return decorate
