"""Tables and leases: the Python face of the C calls."""

from __future__ import annotations

import asyncio
import ctypes
import errno as _errno
import json
import math
import select
import threading
from ctypes import byref, c_void_p
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Any, Callable, Dict, List, Optional, Type, Union

from . import _native
from ._errors import Error, LeaseLost, NotAcquired, closed, from_rc, invalid

Seconds = Union[int, float, timedelta]
Metadata = Union[bytes, bytearray, memoryview, str, Dict[str, Any], List[Any], None]

# Milliseconds beyond which a wait is for ever and a TTL is clamped by the
# library to its horizon anyway (and which still fits the C fields).
_MS_CAP = 1 << 62


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(f"{what} must be a number of seconds, not {type(value).__name__}")
    if value != value:
        raise invalid(f"{what} is NaN")
    return float(value)


def _to_ms(value: Any, what: str, *, positive: bool) -> int:
    """Seconds to whole milliseconds (at least 1 ms for a positive value)."""
    s = _seconds(value, what)
    if s < 0 or (positive and s == 0):
        raise invalid(f"{what} must be {'> 0' if positive else '>= 0'} seconds, not {value!r}")
    if math.isinf(s):
        return _MS_CAP
    ms = round(s * 1000.0)
    if ms == 0 and s > 0:
        ms = 1
    return min(ms, _MS_CAP)


def _wait_ms(wait: Any) -> int:
    """wait: 0 = try once, seconds, None or math.inf = for ever."""
    if wait is None:
        return _native.WAIT_FOREVER
    if isinstance(wait, bool):
        raise invalid("wait must be seconds (0 = try once) or None (wait for ever), not a bool")
    ms = _to_ms(wait, "wait", positive=False)
    return _native.WAIT_FOREVER if ms >= _MS_CAP else ms


def _encode_key(key: Any) -> bytes:
    if isinstance(key, str):
        b = key.encode("utf-8")
    elif isinstance(key, (bytes, bytearray)):
        b = bytes(key)
    else:
        raise invalid(f"key must be a str, not {type(key).__name__}")
    if b"\0" in b:
        raise invalid("key contains a NUL character")
    return b


def _encode_metadata(metadata: Any) -> Optional[bytes]:
    if metadata is None:
        return None
    if isinstance(metadata, (bytes, bytearray, memoryview)):
        data, how = bytes(metadata), "bytes"
    elif isinstance(metadata, str):
        data, how = metadata.encode("utf-8"), "bytes as UTF-8"
    elif isinstance(metadata, (dict, list)):
        try:
            text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise invalid(f"metadata cannot be written as JSON: {e}") from None
        data, how = text.encode("utf-8"), "bytes as JSON"
    else:
        raise invalid(
            f"metadata must be bytes, str or a dict (as JSON), not {type(metadata).__name__}"
        )
    if len(data) > _native.METADATA_MAX:
        raise invalid(
            f"metadata is {len(data)} {how}; at most {_native.METADATA_MAX} bytes fit in the table"
        )
    return data


def _decode(b: bytes) -> str:
    return b.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Info:
    """One lease as inspection sees it (a snapshot; never blocks, never writes)."""

    key: str
    fencing_token: int
    holder_pid: int
    """0 while the key is in a grace period (held by nobody)."""
    holder_alive: Optional[bool]
    """None when it cannot be told (e.g. a holder in another PID namespace)."""
    remaining: float
    """Seconds until expiry; <= 0 once expired."""
    expires_at: float
    """Seconds on the table's clock (``time.monotonic()`` for the default clock)."""
    waiters: int
    metadata: bytes
    in_grace: bool
    shared: bool
    limit: int
    holders: int
    queued: int

    def metadata_json(self) -> Any:
        """The metadata decoded as JSON (as a dict given as metadata was written)."""
        return json.loads(self.metadata.decode("utf-8"))

    @classmethod
    def _of(cls, s: _native.InfoStruct) -> "Info":
        alive = {1: True, 0: False}.get(s.holder_alive)
        return cls(
            key=_decode(s.key),
            fencing_token=s.fencing_token,
            holder_pid=s.holder_pid,
            holder_alive=alive,
            remaining=s.remaining_ms / 1000.0,
            expires_at=s.expires_at_ms / 1000.0,
            waiters=s.waiters,
            metadata=bytes(s.metadata[: s.metadata_len]),
            in_grace=bool(s.in_grace),
            shared=s.mode == _native.SHARED,
            limit=s.limit,
            holders=s.holders,
            queued=s.queued,
        )


@dataclass(frozen=True)
class Stats:
    """Counters since the table was created (all processes), and its state now."""

    acquisitions: int
    contended: int
    waits: int
    timeouts: int
    busy: int
    expirations: int
    reclaimed_dead: int
    renewals: int
    lost: int
    broken: int
    recoveries: int
    fencing_counter: int
    capacity: int
    live_keys: int
    held: int
    attached: int


class ManualClock:
    """A test clock: time moves only when ``advance()`` is called.

    Give it as ``Table(name, clock=ManualClock())`` to a table this process
    creates (a fresh name): every user of a table must use the same clock.
    Thread-safe; the library may read it from its own threads.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._ms = _to_ms(start, "start", positive=False)
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        """The time, in milliseconds."""
        with self._lock:
            return self._ms

    def advance(self, seconds: Seconds) -> None:
        """Moves the clock forward by ``seconds``."""
        ms = _to_ms(seconds, "seconds", positive=False)
        with self._lock:
            self._ms += ms

    def __call__(self) -> int:
        return self.now_ms()


class Keepalive:
    """The library renewing a lease in the background (``Lease.keep_alive()``).

    ``fd`` becomes readable when the lease is lost anyway (broken, or the
    process stopped past its TTL); ``lost`` says so at once. Stop it with
    ``stop()`` or a ``with`` block; releasing the lease stops it too.
    """

    def __init__(self, lease: "Lease", ttl_ms: int, interval_ms: int) -> None:
        self._lease = lease
        self._k: Optional[int] = None
        lib = _native.load()
        o = _native.KeepaliveOpts()
        o.ttl_ms = ttl_ms
        o.interval_ms = interval_ms
        out = c_void_p()
        rc = lib.shmlease_keepalive_start(lease._table._h(), byref(lease._s), byref(o), byref(out))
        if rc == -_errno.ESTALE:
            raise from_rc(rc, f"keep_alive of {lease.key!r}", LeaseLost)
        if rc:
            raise from_rc(rc, f"keep_alive of {lease.key!r}")
        self._k = out.value
        self._final = 0  # the status once stopped
        self._final_renewals = 0
        self.ttl = ttl_ms / 1000.0

    def _ptr(self) -> int:
        if self._k is None:
            raise Error(_errno.EINVAL, "keepalive already stopped", "EINVAL")
        return self._k

    @property
    def fd(self) -> int:
        """A descriptor that becomes readable once the lease is lost (do not read or close it)."""
        return int(_native.load().shmlease_keepalive_fd(self._ptr()))

    def status(self) -> Optional[str]:
        """None while the lease is kept; else why not: "ESTALE" or "EIDRM" (lost),
        "ECANCELED" (released, table closed, or stopped)."""
        if self._k is None:
            rc = self._final
        else:
            rc = _native.load().shmlease_keepalive_status(self._k, None)
        if rc == 0:
            return None
        from ._errors import code_name

        return code_name(rc)

    @property
    def lost(self) -> bool:
        """True once the lease was lost while kept alive (broken, expired, table removed)."""
        return self.status() in ("ESTALE", "EIDRM")

    @property
    def renewals(self) -> int:
        """Successful renewals so far (the one at start included)."""
        if self._k is None:
            return self._final_renewals
        st = _native.KeepaliveStats()
        _native.load().shmlease_keepalive_stats_get(self._ptr(), byref(st))
        return int(st.renewals)

    async def wait_lost(self) -> str:
        """Waits, off the event loop, until the lease is lost (or the keepalive ended);
        returns status()."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fd = self.fd

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            while True:
                why = self.status()
                if why is not None:
                    return why
                await fut
                fut = loop.create_future()
        finally:
            loop.remove_reader(fd)

    def stop(self) -> bool:
        """Stops renewing (the lease stays held until its latest deadline).

        True when the lease was kept all along (or ended by its release),
        False when it was lost. A second stop is a no-op (same answer);
        status() then stays as it was at the stop ("ECANCELED" unless lost)."""
        if self._k is None:
            return self._final == -_errno.ECANCELED
        self._final_renewals = self.renewals
        k, self._k = self._k, None
        self._lease._table._keepalives.discard(self)
        if self._lease._keepalive is self:
            self._lease._keepalive = None
        rc = _native.load().shmlease_keepalive_stop(k)
        lost = rc in (-_errno.ESTALE, -_errno.EIDRM)
        self._final = rc if lost else -_errno.ECANCELED
        return not lost

    def __enter__(self) -> "Keepalive":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class Lease:
    """A lease this process holds on one key of a table.

    ``fencing_token`` (an int, strictly increasing across the table) is what to
    pass to the resource the lease protects. ``renew()`` returns False once
    the lease is lost; lost is lost for ever. Used as a context manager, the
    lease is released when the block ends (see ``Table.lease``).
    """

    __slots__ = ("_table", "_s", "key", "_ttl_ms", "_spent", "_keepalive", "__weakref__")

    def __init__(self, table: "Table", key: str, ttl_ms: int, s: _native.LeaseStruct) -> None:
        self._table = table
        self._s = s
        self.key = key
        self._ttl_ms = ttl_ms
        self._spent = False
        self._keepalive: Optional[Keepalive] = None

    @property
    def ttl(self) -> float:
        """The TTL (seconds) it was acquired with: what renew() uses when given none."""
        return self._ttl_ms / 1000.0

    @property
    def fencing_token(self) -> int:
        """Greater than every earlier holder's token of this key (and every token
        handed out before this acquire was called)."""
        return int(self._s.fencing_token)

    @property
    def expires_at(self) -> float:
        """The deadline, in seconds on the table's clock (``time.monotonic()``
        for the default clock); moved by renew()."""
        return float(self._s.expires_at_ms) / 1000.0

    @property
    def expires_at_ms(self) -> int:
        """The deadline in milliseconds on the table's clock."""
        return int(self._s.expires_at_ms)

    def remaining(self) -> float:
        """Seconds until the deadline (negative once past)."""
        return (int(self._s.expires_at_ms) - self._table.now_ms()) / 1000.0

    def renew(self, ttl: Optional[Seconds] = None) -> bool:
        """Moves the deadline to now + ttl (default: the TTL it was acquired with).

        True if the lease was still held; False once it is lost (expired,
        broken, taken over, released): lost is lost for ever."""
        ms = _to_ms(ttl, "ttl", positive=True) if ttl is not None else self._ttl_ms
        rc = _native.fast.renew(self._table._h(), byref(self._s), ctypes.c_uint64(ms))
        if rc == 0:
            return True
        if rc == -_errno.ESTALE:
            return False
        raise from_rc(rc, f"renew of {self.key!r}")

    def check(self) -> bool:
        """True while this lease is still the current, unexpired claim of its key (cheap)."""
        rc = _native.fast.check(self._table._h(), byref(self._s))
        if rc in (0, -_errno.ESTALE):
            return bool(rc == 0)
        raise from_rc(rc, f"check of {self.key!r}")

    def _stop_keepalive(self) -> None:
        if self._keepalive is not None:
            self._keepalive.stop()

    def release(self) -> bool:
        """Frees the key at once (waiters wake). True if the lease was still held;
        False if it was lost or already released (then nothing changes)."""
        h = self._table._h()
        if self._keepalive is not None:
            self._keepalive.stop()
        self._spent = True
        rc = _native.fast.release(h, byref(self._s))
        if rc in (0, -_errno.ESTALE):
            return bool(rc == 0)
        raise from_rc(rc, f"release of {self.key!r}")

    def release_after(self, grace: Seconds) -> bool:
        """Releases the lease but keeps the key held by nobody for ``grace``
        seconds (nobody acquires it meanwhile): "done; not again for a while".
        True if the lease was still held, False if it was lost."""
        ms = _to_ms(grace, "grace", positive=False)
        h = self._table._h()
        self._stop_keepalive()
        self._spent = True
        rc = _native.load().shmlease_release_after(h, byref(self._s), ms)
        if rc in (0, -_errno.ESTALE):
            return bool(rc == 0)
        raise from_rc(rc, f"release_after of {self.key!r}")

    def keep_alive(self, ttl: Optional[Seconds] = None, interval: Optional[Seconds] = None) -> Keepalive:
        """Has the library renew this lease in the background, to now + ttl
        (default: its TTL) every ``interval`` (default: a third of ttl), until
        the keepalive is stopped or the lease released. One per lease."""
        ttl_ms = _to_ms(ttl, "ttl", positive=True) if ttl is not None else self._ttl_ms
        interval_ms = _to_ms(interval, "interval", positive=True) if interval is not None else 0
        if interval_ms and interval_ms >= ttl_ms:
            raise invalid("interval must be shorter than ttl")
        k = Keepalive(self, ttl_ms, interval_ms)
        self._keepalive = k
        self._table._keepalives.add(k)
        return k

    @property
    def keepalive(self) -> Optional[Keepalive]:
        """The running keepalive, if any."""
        return self._keepalive

    def _finish(self, failed: bool) -> None:
        """End of a with block: release, unless the block ended the lease itself."""
        if self._spent or self._table.closed:
            return
        kept = self.release()
        if not kept and not failed:
            raise LeaseLost(
                _errno.ESTALE,
                f"lease of {self.key!r} (fencing token {self.fencing_token}) was lost "
                "before the block ended: its work may have overlapped another holder's",
                "ESTALE",
            )

    def __enter__(self) -> "Lease":
        return self

    def __exit__(
        self,
        et: Optional[Type[BaseException]],
        ev: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self._finish(et is not None)

    def __repr__(self) -> str:
        return (
            f"<shmlease.Lease {self.key!r} token={self.fencing_token} "
            f"expires_at={self.expires_at:.3f}{' spent' if self._spent else ''}>"
        )


class _Request:
    """Everything one acquire passes to C (kept alive for the call)."""

    __slots__ = ("key", "key_b", "opts", "meta", "ttl_ms")

    def __init__(
        self,
        key: Any,
        ttl: Seconds,
        wait: Optional[Seconds],
        metadata: Metadata,
        shared: bool,
        limit: int,
        fair: bool,
    ) -> None:
        self.key_b = _encode_key(key)
        self.key = key if isinstance(key, str) else _decode(self.key_b)
        self.ttl_ms = _to_ms(ttl, "ttl", positive=True)
        o = _native.AcquireOpts()
        o.ttl_ms = self.ttl_ms
        o.wait_ms = _wait_ms(wait)
        self.meta = _encode_metadata(metadata)
        if self.meta is not None:
            o.metadata = ctypes.cast(ctypes.c_char_p(self.meta), c_void_p)
            o.metadata_len = len(self.meta)
        if shared:
            o.mode = _native.SHARED
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise invalid(f"limit must be an int >= 0, not {limit!r}")
        if limit and not shared:
            raise invalid("limit is for shared leases (shared=True)")
        if limit > _native.LIMIT_MAX:
            raise invalid(f"limit must be at most {_native.LIMIT_MAX}")
        o.limit = limit
        if fair:
            o.flags = _native.ACQUIRE_FAIR
        self.opts = o


class Table:
    """A table of leases shared by the processes of this host.

    ``Table(name)`` opens the table ``name`` (the segment
    ``/dev/shm/shmlease.<name>``), creating it when missing. ``backend`` is
    passed to the library as is (``None``: the local segment; a Redis URL
    for a library built with the Redis backend).

    After ``os.fork()`` the child may keep using the table; it holds none of
    its parent's leases (their renew() is False in the child).
    Close it with ``close()`` or a ``with`` block; closing releases the leases
    still held through it.
    """

    def __init__(
        self,
        name: str,
        backend: Optional[str] = None,
        *,
        capacity: Optional[int] = None,
        mode: Optional[int] = None,
        create: bool = True,
        exclusive: bool = False,
        readonly: bool = False,
        share: bool = False,
        group: Optional[int] = None,
        open_timeout: Optional[Seconds] = None,
        clock: Optional[Callable[[], int]] = None,
    ) -> None:
        """Opens (or creates) table ``name``.

        capacity: live keys a new table holds (default 4096); mode: permission
        bits of a new table (default 0o600); create=False: attach only;
        exclusive: create only; readonly: inspection only; share: attach to
        another user's table its mode lets us use; group: gid of a new table's
        files; open_timeout: seconds to wait for a table's structural locks;
        clock: a function returning milliseconds (a test clock, e.g.
        ``ManualClock()``), for a new table that every user opens with it.
        """
        self._handle: Optional[int] = None
        self._hp: Optional[c_void_p] = None
        self._try_opts: Dict[Any, _native.AcquireOpts] = {}
        self._keepalives: "set[Keepalive]" = set()
        self._lock = threading.Lock()
        self._pending = 0
        self._pending_reqs: "set[int]" = set()
        self._closing = False
        if not isinstance(name, str):
            raise invalid(f"table name must be a str, not {type(name).__name__}")
        if backend is not None and not isinstance(backend, str):
            raise invalid(f"backend must be a str (a URL) or None, not {type(backend).__name__}")
        self.name = name
        self.backend = backend
        lib = _native.load()
        o = _native.Options()
        for value, what in ((capacity, "capacity"), (mode, "mode"), (group, "group")):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise invalid(f"{what} must be an int >= 0, not {value!r}")
        if capacity is not None:
            if capacity == 0 or capacity > 0xFFFFFFFF:
                raise invalid(f"capacity must be between 1 and {1 << 24}, not {capacity}")
            o.capacity = capacity
        if mode is not None:
            if mode == 0 or mode > 0o777:
                raise invalid(f"mode must be permission bits (1..0o777), not {oct(mode)}")
            o.mode = mode
        flags = 0
        if not create:
            flags |= _native.OPEN_NOCREATE
        if exclusive:
            flags |= _native.OPEN_EXCL
        if readonly:
            flags |= _native.OPEN_READONLY
        if share:
            flags |= _native.OPEN_SHARE
        if group is not None:
            if group > 0xFFFFFFFF:
                raise invalid(f"group must be a gid, not {group}")
            flags |= _native.OPEN_GROUP
            o.gid = group
        o.flags = flags
        if open_timeout is not None:
            ms = _to_ms(open_timeout, "open_timeout", positive=True)
            o.open_timeout_ms = min(ms, 0xFFFFFFFF)
        self._backend_b = backend.encode("utf-8") if backend is not None else None
        o.backend = self._backend_b
        self._clock_cb = None
        if clock is not None:
            if not callable(clock):
                raise invalid("clock must be a function returning milliseconds")
            last = [0]
            clock_fn = clock

            def read(_ctx: Optional[int]) -> int:
                try:
                    last[0] = int(clock_fn())
                except BaseException:  # never let an exception cross into C
                    pass
                return last[0]

            self._clock_cb = _native.CLOCK_FN(read)
            o.clock_ms = self._clock_cb
        name_b = name.encode("utf-8")
        if b"\0" in name_b:
            raise invalid("table name contains a NUL character")
        out = c_void_p()
        rc = lib.shmlease_open(name_b, byref(o), byref(out))
        if rc:
            raise from_rc(rc, f"open table {name!r}" + (f" ({backend})" if backend else ""))
        self._handle = out.value
        self._hp = out

    # -- the handle -------------------------------------------------------

    def _h(self) -> c_void_p:
        h = self._hp
        if h is None or self._closing:
            raise closed(self.name)
        return h

    @property
    def closed(self) -> bool:
        return self._handle is None or self._closing

    def close(self) -> None:
        """Releases the leases still held through this table and detaches.

        Acquires still waiting through it (other threads, other tasks) end
        with an Error (ECANCELED); the handle is freed once they have.
        A second close is a no-op. Must not race with calls on the table
        other than those waits."""
        with self._lock:
            if self._handle is None or self._closing:
                return
            self._closing = True
            lib = _native.load()
            for k in list(self._keepalives):
                k.stop()
            for a in self._pending_reqs:
                lib.shmlease_async_cancel(a)
            if self._pending:
                return  # the last waiter to leave closes the handle
            self._close_now()

    def _close_now(self) -> None:
        h, self._handle, self._hp = self._hp, None, None
        _native.load().shmlease_close(h)

    def __enter__(self) -> "Table":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<shmlease.Table {self.name!r} {state}>"

    # -- leases -----------------------------------------------------------

    def _lease_of(self, req: _Request, s: _native.LeaseStruct) -> Lease:
        return Lease(self, req.key, req.ttl_ms, s)

    def _try_or_none(self, rc: int, req: _Request, s: _native.LeaseStruct) -> Optional[Lease]:
        if rc == 0:
            return self._lease_of(req, s)
        if rc in (-_errno.EBUSY, -_errno.ETIMEDOUT):
            return None
        if rc == -_errno.ECANCELED and self._closing:
            raise from_rc(rc, f"acquire of {req.key!r}: table {self.name!r} closed while waiting")
        raise from_rc(rc, f"acquire of {req.key!r}")

    def _start_async(self, req: _Request) -> "Optional[int]":
        """Starts an async acquire; None when the process has too many (then block)."""
        lib = _native.load()
        a = c_void_p()
        with self._lock:
            h = self._h()
            rc = lib.shmlease_acquire_async(h, req.key_b, byref(req.opts), byref(a))
            if rc == -_errno.EAGAIN:
                return None
            if rc:
                raise from_rc(rc, f"acquire of {req.key!r}")
            ptr = a.value
            assert ptr is not None  # 0 returned: the request exists
            self._pending += 1
            self._pending_reqs.add(ptr)
            return ptr

    def _finish_async(self, a: int, cancel: bool) -> "tuple[int, _native.LeaseStruct]":
        lib = _native.load()
        s = _native.LeaseStruct()
        if cancel:
            lib.shmlease_async_cancel(a)
        rc = lib.shmlease_async_result(a, byref(s)) if not cancel else -_errno.ECANCELED
        lib.shmlease_async_free(a)  # releases a lease nobody fetched
        with self._lock:
            self._pending_reqs.discard(a)
            self._pending -= 1
            if self._closing and self._pending == 0 and self._handle is not None:
                self._close_now()
        return rc, s

    def acquire(
        self,
        key: str,
        ttl: Seconds,
        wait: Optional[Seconds] = 0,
        metadata: Metadata = None,
        *,
        shared: bool = False,
        limit: int = 0,
        fair: bool = False,
    ) -> Optional[Lease]:
        """Acquires ``key`` for ``ttl`` seconds; the Lease, or None if not acquired.

        wait: 0 (default) tries once; seconds to wait at most; None or
        math.inf waits for ever. A wait can be interrupted (Ctrl-C, a signal
        handler that raises): nothing is then held. metadata: bytes, str, or
        a dict (stored as JSON), at most 128 bytes, shown by inspection.
        shared=True: a shared (reader) lease, at most ``limit`` holders at
        once when limit > 0; fair=True: waiters served in arrival order.
        None when the key stays held (EBUSY, ETIMEDOUT); an Error otherwise.
        """
        tw = type(wait)
        if (tw is int or tw is float) and wait == 0 and metadata is None and type(key) is str \
                and not (shared or limit or fair):
            # the common try, with options made once per TTL
            opts = self._try_opts.get(ttl) if type(ttl) is not bool else None
            if opts is None:
                opts = self._try_opts_for(ttl)
            if "\0" not in key:
                s = _native.LeaseStruct()
                rc = _native.fast.acquire(self._h(), key.encode(), byref(opts), byref(s))
                if rc == 0:
                    return Lease(self, key, opts.ttl_ms, s)
                if rc == -_errno.EBUSY:
                    return None
        req = _Request(key, ttl, wait, metadata, shared, limit, fair)
        return self._acquire(req)

    def _try_opts_for(self, ttl: Any) -> _native.AcquireOpts:
        o = _native.AcquireOpts()
        o.ttl_ms = _to_ms(ttl, "ttl", positive=True)
        if len(self._try_opts) < 64 and type(ttl) in (int, float):
            self._try_opts[ttl] = o
        return o

    def _acquire(self, req: _Request) -> Optional[Lease]:
        lib = _native.load()
        h = self._h()
        s = _native.LeaseStruct()
        wait_ms = req.opts.wait_ms
        if wait_ms == 0:
            return self._try_or_none(lib.shmlease_acquire(h, req.key_b, byref(req.opts), byref(s)), req, s)
        # A try first: no thread when the key is free.
        req.opts.wait_ms = 0
        rc = lib.shmlease_acquire(h, req.key_b, byref(req.opts), byref(s))
        req.opts.wait_ms = wait_ms
        if rc != -_errno.EBUSY:
            return self._try_or_none(rc, req, s)
        # Wait in the library's thread and poll its descriptor here: the
        # interpreter stays able to run signal handlers (Ctrl-C) meanwhile.
        a = self._start_async(req)
        if a is None:  # too many waits in this process: wait in this thread
            return self._try_or_none(lib.shmlease_acquire(h, req.key_b, byref(req.opts), byref(s)), req, s)
        try:
            p = select.poll()
            p.register(lib.shmlease_async_fd(a), select.POLLIN)
            while not p.poll():
                pass
        except BaseException:
            self._finish_async(a, cancel=True)
            raise
        rc, s = self._finish_async(a, cancel=False)
        return self._try_or_none(rc, req, s)

    async def acquire_async(
        self,
        key: str,
        ttl: Seconds,
        wait: Optional[Seconds] = 0,
        metadata: Metadata = None,
        *,
        shared: bool = False,
        limit: int = 0,
        fair: bool = False,
    ) -> Optional[Lease]:
        """``acquire()`` for asyncio: the wait happens off the event loop.

        Cancelling the task ends the wait (nothing is then held)."""
        req = _Request(key, ttl, wait, metadata, shared, limit, fair)
        return await self._acquire_async(req)

    async def _acquire_async(self, req: _Request) -> Optional[Lease]:
        lib = _native.load()
        h = self._h()
        s = _native.LeaseStruct()
        wait_ms = req.opts.wait_ms
        req.opts.wait_ms = 0
        rc = lib.shmlease_acquire(h, req.key_b, byref(req.opts), byref(s))
        req.opts.wait_ms = wait_ms
        if rc != -_errno.EBUSY or wait_ms == 0:
            return self._try_or_none(rc, req, s)
        loop = asyncio.get_running_loop()
        a = self._start_async(req)
        if a is None:  # too many waits in this process: wait in an executor thread
            return await loop.run_in_executor(None, self._acquire, req)
        fd = lib.shmlease_async_fd(a)
        fut: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        try:
            await fut
        except BaseException:
            loop.remove_reader(fd)
            self._finish_async(a, cancel=True)
            raise
        loop.remove_reader(fd)
        rc, s = self._finish_async(a, cancel=False)
        return self._try_or_none(rc, req, s)

    def lease(
        self,
        key: str,
        ttl: Seconds,
        wait: Optional[Seconds] = 0,
        metadata: Metadata = None,
        *,
        shared: bool = False,
        limit: int = 0,
        fair: bool = False,
    ) -> "LeaseContext":
        """``with table.lease(key, ttl=60, wait=5) as lease:``

        Acquires on entry (arguments as ``acquire``), or raises NotAcquired
        (code EBUSY or ETIMEDOUT); releases when the block ends, also on an
        exception. If the block ends normally but the lease was lost before
        (expired, broken), raises LeaseLost. The block may end the lease
        itself (``lease.release_after(grace)``): it is then left as it is.
        """
        return LeaseContext(self, (key, ttl, wait, metadata), dict(shared=shared, limit=limit, fair=fair))

    def lease_async(
        self,
        key: str,
        ttl: Seconds,
        wait: Optional[Seconds] = 0,
        metadata: Metadata = None,
        *,
        shared: bool = False,
        limit: int = 0,
        fair: bool = False,
    ) -> "AsyncLeaseContext":
        """``async with table.lease_async(key, ttl=60, wait=5) as lease:``

        ``lease()`` for asyncio: the wait happens off the event loop, and
        cancelling the task ends it."""
        return AsyncLeaseContext(self, (key, ttl, wait, metadata), dict(shared=shared, limit=limit, fair=fair))

    # -- operator's calls and inspection ----------------------------------

    def break_lease(self, key: str) -> bool:
        """Ends whoever holds ``key`` now (their renew() becomes False).
        True if it was held, False if it was free."""
        key_b = _encode_key(key)
        rc = _native.load().shmlease_break(self._h(), key_b)
        if rc in (0, -_errno.ENOENT):
            return bool(rc == 0)
        raise from_rc(rc, f"break of {key!r}")

    def inspect(self, key: str) -> Optional[Info]:
        """Who holds ``key`` (an Info), or None if it is free. Never blocks."""
        key_b = _encode_key(key)
        s = _native.InfoStruct()
        rc = _native.load().shmlease_inspect(self._h(), key_b, byref(s))
        if rc == -_errno.ENOENT:
            return None
        if rc:
            raise from_rc(rc, f"inspect of {key!r}")
        return Info._of(s)

    def leases(self) -> List[Info]:
        """Every held lease and grace period now (one Info per shared holder)."""
        found: List[Info] = []

        def visit(p: Any, _arg: Any) -> int:
            found.append(Info._of(p.contents))
            return 0

        cb = _native.FOREACH_FN(visit)
        rc = _native.load().shmlease_foreach(self._h(), cb, None)
        if rc < 0:
            raise from_rc(rc, "foreach")
        return found

    def stats(self) -> Stats:
        """The table's counters (all processes) and state."""
        s = _native.StatsStruct()
        rc = _native.load().shmlease_stats_get(self._h(), byref(s))
        if rc:
            raise from_rc(rc, "stats")
        return Stats(**{f: int(getattr(s, f)) for f in Stats.__dataclass_fields__})

    def now_ms(self) -> int:
        """The table's clock, in milliseconds (deadlines are on it)."""
        return int(_native.load().shmlease_now_ms(self._h()))

    def now(self) -> float:
        """The table's clock, in seconds (``time.monotonic()`` for the default clock)."""
        return self.now_ms() / 1000.0


class LeaseContext:
    """What ``Table.lease()`` returns: acquires on entry, releases on exit."""

    def __init__(self, table: Table, args: "tuple[Any, ...]", kwargs: Dict[str, Any]) -> None:
        self._table = table
        self._args = args
        self._kwargs = kwargs
        self._lease: Optional[Lease] = None

    def _got(self, lease: Optional[Lease]) -> Lease:
        if lease is None:
            key, wait = self._args[0], self._args[2]
            why = _errno.EBUSY if wait == 0 else _errno.ETIMEDOUT
            how = "held by another owner" if why == _errno.EBUSY else "still held when the wait ran out"
            raise NotAcquired(why, f"lease of {key!r} not acquired: {how}", _errno.errorcode[why])
        self._lease = lease
        return lease

    def __enter__(self) -> Lease:
        return self._got(self._table.acquire(*self._args, **self._kwargs))

    def __exit__(
        self,
        et: Optional[Type[BaseException]],
        ev: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._lease is not None:
            self._lease._finish(et is not None)


class AsyncLeaseContext(LeaseContext):
    """What ``Table.lease_async()`` returns: ``async with`` only."""

    def __enter__(self) -> Lease:
        raise TypeError("use 'async with table.lease_async(...)' (or 'with table.lease(...)')")

    async def __aenter__(self) -> Lease:
        return self._got(await self._table.acquire_async(*self._args, **self._kwargs))

    async def __aexit__(
        self,
        et: Optional[Type[BaseException]],
        ev: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if self._lease is not None:
            self._lease._finish(et is not None)


def unlink(name: str, backend: Optional[str] = None) -> bool:
    """Removes table ``name`` (open handles keep working on the removed files);
    with a backend (a Redis URL), deletes the table's keys on that server.
    True if removed, False if there was no such table."""
    if not isinstance(name, str):
        raise invalid(f"table name must be a str, not {type(name).__name__}")
    if backend is not None and not isinstance(backend, str):
        raise invalid(f"backend must be a str (a URL) or None, not {type(backend).__name__}")
    lib = _native.load()
    if backend is None:
        rc = lib.shmlease_unlink(name.encode("utf-8"))
    elif not hasattr(lib, "shmlease_unlink_backend"):
        rc = -_errno.EPROTONOSUPPORT  # a library built before the Redis backend
    else:
        rc = lib.shmlease_unlink_backend(name.encode("utf-8"), backend.encode("utf-8"))
    if rc in (0, -_errno.ENOENT):
        return bool(rc == 0)
    raise from_rc(rc, f"unlink table {name!r}")


def library_version() -> str:
    """The version of the libshmlease loaded (e.g. "1.4.0")."""
    return str(_native.load().shmlease_version().decode())
