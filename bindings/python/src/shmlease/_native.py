"""The C library, loaded with ctypes: where it is found, and its structs and calls.

Nothing here is public. The structs mirror ``include/shmlease.h`` field by
field (the tests compare every size and offset with the header's, compiled).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int,
    c_int32,
    c_int64,
    c_long,
    c_size_t,
    c_uint8,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Any, List, Optional

#: The oldest library this package works with: 1.4 (shmlease_options.backend).
REQUIRED_VERSION = (1 << 16) | (4 << 8)

KEY_MAX = 127
METADATA_MAX = 128
WAIT_FOREVER = -1

OPEN_NOCREATE = 1 << 0
OPEN_EXCL = 1 << 1
OPEN_READONLY = 1 << 2
OPEN_SHARE = 1 << 3
OPEN_GROUP = 1 << 4

EXCLUSIVE = 0
SHARED = 1
LIMIT_MAX = 1023
ACQUIRE_FAIR = 1 << 0

CLOCK_FN = CFUNCTYPE(c_uint64, c_void_p)


class Options(Structure):
    _fields_ = [
        ("capacity", c_uint32),
        ("mode", c_uint32),
        ("flags", c_uint32),
        ("clock_ms", CLOCK_FN),
        ("clock_ctx", c_void_p),
        ("open_timeout_ms", c_uint32),
        ("gid", c_uint32),
        ("backend", c_char_p),
        ("reserved_0", c_uint32 * 4),
    ]


class AcquireOpts(Structure):
    _fields_ = [
        ("ttl_ms", c_uint64),
        ("wait_ms", c_int64),
        ("metadata", c_void_p),
        ("metadata_len", c_size_t),
        ("mode", c_uint32),
        ("limit", c_uint32),
        ("flags", c_uint32),
        ("reserved_0", c_uint32 * 1),
        ("cancel", c_void_p),
        ("reserved_1", c_uint64 * 1),
    ]


class LeaseStruct(Structure):
    _fields_ = [
        ("fencing_token", c_uint64),
        ("expires_at_ms", c_uint64),
        ("_private", c_uint64 * 6),
    ]


class InfoStruct(Structure):
    _fields_ = [
        ("key", c_char * (KEY_MAX + 1)),
        ("fencing_token", c_uint64),
        ("holder_pid", c_int32),
        ("holder_alive", c_int),
        ("remaining_ms", c_int64),
        ("waiters", c_uint32),
        ("metadata", c_uint8 * METADATA_MAX),
        ("metadata_len", c_size_t),
        ("expires_at_ms", c_uint64),
        ("in_grace", c_int),
        ("holder_other_pidns", c_int),
        ("holder_start_time", c_uint64),
        ("holder_handle", c_uint32),
        ("mode", c_uint32),
        ("limit", c_uint32),
        ("holders", c_uint32),
        ("queued", c_uint32),
        ("reserved_0", c_uint32 * 3),
    ]


class StatsStruct(Structure):
    _fields_ = [
        ("acquisitions", c_uint64),
        ("contended", c_uint64),
        ("waits", c_uint64),
        ("timeouts", c_uint64),
        ("busy", c_uint64),
        ("expirations", c_uint64),
        ("reclaimed_dead", c_uint64),
        ("renewals", c_uint64),
        ("lost", c_uint64),
        ("broken", c_uint64),
        ("recoveries", c_uint64),
        ("fencing_counter", c_uint64),
        ("capacity", c_uint32),
        ("live_keys", c_uint32),
        ("held", c_uint32),
        ("attached", c_uint32),
        ("format_version", c_uint32),
        ("reserved_0", c_uint32 * 1),
        ("segment_bytes", c_uint64),
        ("created_at_ms", c_uint64),
        ("table_epoch", c_uint64),
        ("reserved_1", c_uint64 * 8),
    ]


ON_LOST_FN = CFUNCTYPE(None, c_void_p, POINTER(LeaseStruct), c_int, c_void_p)


class KeepaliveOpts(Structure):
    _fields_ = [
        ("ttl_ms", c_uint64),
        ("interval_ms", c_uint64),
        ("on_lost", ON_LOST_FN),
        ("arg", c_void_p),
        ("reserved_0", c_uint64 * 4),
    ]


class KeepaliveStats(Structure):
    _fields_ = [
        ("status", c_int32),
        ("reserved_0", c_uint32 * 1),
        ("renewals", c_uint64),
        ("fencing_token", c_uint64),
        ("expires_at_ms", c_uint64),
        ("ttl_ms", c_uint64),
        ("interval_ms", c_uint64),
        ("running_ms", c_uint64),
        ("reserved_1", c_uint64 * 4),
    ]


FOREACH_FN = CFUNCTYPE(c_int, POINTER(InfoStruct), c_void_p)

_P = c_void_p  # opaque handles: shmlease_table *, shmlease_async *, ...

# name: (restype, argtypes)
_PROTOTYPES = {
    "shmlease_open": (c_int, [c_char_p, POINTER(Options), POINTER(_P)]),
    "shmlease_close": (None, [_P]),
    "shmlease_unlink": (c_int, [c_char_p]),
    "shmlease_acquire": (c_int, [_P, c_char_p, POINTER(AcquireOpts), POINTER(LeaseStruct)]),
    "shmlease_renew": (c_int, [_P, POINTER(LeaseStruct), c_uint64]),
    "shmlease_release": (c_int, [_P, POINTER(LeaseStruct)]),
    "shmlease_release_after": (c_int, [_P, POINTER(LeaseStruct), c_uint64]),
    "shmlease_check": (c_int, [_P, POINTER(LeaseStruct)]),
    "shmlease_break": (c_int, [_P, c_char_p]),
    "shmlease_inspect": (c_int, [_P, c_char_p, POINTER(InfoStruct)]),
    "shmlease_foreach": (c_int, [_P, FOREACH_FN, c_void_p]),
    "shmlease_stats_get": (c_int, [_P, POINTER(StatsStruct)]),
    "shmlease_now_ms": (c_uint64, [_P]),
    "shmlease_strerror": (c_char_p, [c_int]),
    "shmlease_errname": (c_char_p, [c_int]),
    "shmlease_version": (c_char_p, []),
    "shmlease_version_number": (c_uint32, []),
    "shmlease_acquire_async": (c_int, [_P, c_char_p, POINTER(AcquireOpts), POINTER(_P)]),
    "shmlease_async_fd": (c_int, [_P]),
    "shmlease_async_result": (c_int, [_P, POINTER(LeaseStruct)]),
    "shmlease_async_cancel": (c_int, [_P]),
    "shmlease_async_free": (None, [_P]),
    "shmlease_keepalive_start": (
        c_int,
        [_P, POINTER(LeaseStruct), POINTER(KeepaliveOpts), POINTER(_P)],
    ),
    "shmlease_keepalive_fd": (c_int, [_P]),
    "shmlease_keepalive_status": (c_int, [_P, POINTER(LeaseStruct)]),
    "shmlease_keepalive_stats_get": (c_int, [_P, POINTER(KeepaliveStats)]),
    "shmlease_keepalive_stop": (c_int, [_P]),
    "shmlease_waiters": (c_long, [_P, c_char_p, c_void_p, c_size_t]),
}


# Calls that a 1.4 library may lack (built before the Redis backend): bound
# when present.
_OPTIONAL = {
    "shmlease_unlink_backend": (c_int, [c_char_p, c_char_p]),
}

# The calls of an uncontended acquire+release, also bound without argtypes
# (about half the cost of a call through ctypes' argument conversion). Their
# callers pass exactly the C types: a c_void_p handle, bytes, byref() of the
# structs, c_uint64 for 64-bit integers.
_FAST = ("shmlease_acquire", "shmlease_release", "shmlease_renew", "shmlease_check")


class Fast:
    """Unchecked entry points: internal use only, with exact C types."""

    acquire: Any
    release: Any
    renew: Any
    check: Any

    def __init__(self, lib: ctypes.CDLL) -> None:
        for name in _FAST:
            fn = lib._FuncPtr((name, lib))  # a new function object: no argtypes
            fn.restype = c_int
            setattr(self, name[len("shmlease_"):], fn)


# Set by load(): every object that uses it (a Table, its leases) exists after a load.
fast: Any = None


class LibraryNotFoundError(ImportError):
    """libshmlease.so could not be loaded; the message lists every place tried."""

    def __init__(self, message: str, tried: List[str]) -> None:
        super().__init__(message)
        self.tried = tried


_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def _candidates() -> List[str]:
    """Where to look, in order (the environment variable alone when it is set)."""
    explicit = os.environ.get("SHMLEASE_LIBRARY")
    if explicit:
        return [explicit]
    found = []
    # The dynamic loader's own search (LD_LIBRARY_PATH, the ld.so cache, the
    # default directories), by soname first: the major version this package knows.
    found.append("libshmlease.so.1")
    name = ctypes.util.find_library("shmlease")
    if name and name not in found:
        found.append(name)
    return found


def load() -> ctypes.CDLL:
    """The library, loaded once per process (thread-safe)."""
    global _lib
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried: List[str] = []
        errors: List[str] = []
        lib = None
        for cand in _candidates():
            tried.append(cand)
            try:
                lib = ctypes.CDLL(cand)
                break
            except OSError as e:
                errors.append(f"  {cand}: {e}")
        if lib is None:
            how = (
                "SHMLEASE_LIBRARY is set; only that path was tried"
                if os.environ.get("SHMLEASE_LIBRARY")
                else "set SHMLEASE_LIBRARY to the path of libshmlease.so, or install "
                "the library where the dynamic loader finds it (ldconfig, LD_LIBRARY_PATH)"
            )
            raise LibraryNotFoundError(
                "shmlease: cannot load the C library libshmlease.so; tried:\n"
                + "\n".join(errors)
                + f"\n({how})",
                tried,
            )
        try:
            for fname, (restype, argtypes) in _PROTOTYPES.items():
                fn = getattr(lib, fname)
                fn.restype = restype
                fn.argtypes = argtypes
            for fname, (restype, argtypes) in _OPTIONAL.items():
                if hasattr(lib, fname):
                    fn = getattr(lib, fname)
                    fn.restype = restype
                    fn.argtypes = argtypes
        except AttributeError as e:
            raise LibraryNotFoundError(
                f"shmlease: {tried[-1]} is not a usable libshmlease ({e}); "
                "this package needs libshmlease 1.4 or newer",
                tried,
            ) from None
        have = lib.shmlease_version_number()
        if have < REQUIRED_VERSION or have >> 16 != REQUIRED_VERSION >> 16:
            raise LibraryNotFoundError(
                f"shmlease: {tried[-1]} is libshmlease "
                f"{lib.shmlease_version().decode()}; this package needs 1.x with x >= 4",
                tried,
            )
        global fast
        fast = Fast(lib)
        _lib = lib
        return lib
