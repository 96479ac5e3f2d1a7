"""Exceptions: every one carries the errno name (``code``) and number (``errno``)."""

from __future__ import annotations

import errno as _errno
import os
from typing import Dict, Optional, Type

from . import _native


class Error(OSError):
    """A shmlease call failed.

    ``code`` is the errno name the C library gives (``"EINVAL"``, ``"ENOSPC"``,
    ...), ``errno`` its number, ``strerror`` the library's text.
    """

    code: str

    def __init__(self, errnum: int, message: str, code: Optional[str] = None) -> None:
        super().__init__(errnum, message)
        self.code = code if code is not None else _errno.errorcode.get(errnum, "E?")

    def __str__(self) -> str:
        return f"[{self.code}] {self.strerror}"


class InvalidArgument(Error, ValueError):
    """Bad input (code ``EINVAL`` or ``ENAMETOOLONG``); nothing was changed.

    Also a ``ValueError``.
    """


class NotAcquired(Error):
    """``Table.lease()`` did not get the key: ``EBUSY`` (held, no wait) or ``ETIMEDOUT``."""


class LeaseLost(Error):
    """The lease was lost (``ESTALE``): expired, broken, or taken over.

    Raised when a ``with table.lease(...)`` block (or a ``lock`` function)
    ends normally but its lease was lost before the end: its work may have
    overlapped another holder's.
    """


_CLASSES: Dict[int, Type[Error]] = {
    _errno.EINVAL: InvalidArgument,
    _errno.ENAMETOOLONG: InvalidArgument,
    _errno.ESTALE: LeaseLost,
}


def code_name(rc: int) -> str:
    """The errno name of a negative return code, as the library names it."""
    lib = _native.load()
    name = str(lib.shmlease_errname(rc).decode())
    if name == "E?":
        name = _errno.errorcode.get(-rc, "E?")
    return name


def from_rc(rc: int, what: str, cls: Optional[Type[Error]] = None) -> Error:
    """The exception for a negative return code ``rc`` of the call described by ``what``."""
    lib = _native.load()
    num = -rc
    name = code_name(rc)
    text = str(lib.shmlease_strerror(rc).decode())
    if not text or text.startswith("unknown"):
        text = os.strerror(num)
    klass: Type[Error] = cls if cls is not None else _CLASSES.get(num, Error)
    return klass(num, f"{what}: {text}", name)


def invalid(message: str) -> InvalidArgument:
    """Bad input found before calling the library (code ``EINVAL``)."""
    return InvalidArgument(_errno.EINVAL, message, "EINVAL")


def closed(name: str) -> Error:
    return Error(_errno.EBADF, f"table {name!r} is closed", "EBADF")
