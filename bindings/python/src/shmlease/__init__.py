"""shmlease: named leases (locks that expire) shared by the processes of one host.

::

    import shmlease

    with shmlease.Table("jobs") as table:
        with table.lease("schedule:daily-report", ttl=60, wait=5) as lease:
            run_report(fencing_token=lease.fencing_token)

A thin layer over the C library libshmlease (loaded with ctypes): set
``SHMLEASE_LIBRARY`` to its path, or install it where the dynamic loader
finds it. Times are seconds (floats); errors are ``shmlease.Error``
(an ``OSError``) with the errno name in ``code``.
"""

from ._errors import Error, InvalidArgument, LeaseLost, NotAcquired
from ._lock import lock
from ._native import LibraryNotFoundError
from ._table import (
    AsyncLeaseContext,
    Info,
    Keepalive,
    Lease,
    LeaseContext,
    ManualClock,
    Stats,
    Table,
    library_version,
    unlink,
)

__version__ = "1.4.0"

__all__ = [
    "AsyncLeaseContext",
    "Error",
    "Info",
    "InvalidArgument",
    "Keepalive",
    "Lease",
    "LeaseContext",
    "LeaseLost",
    "LibraryNotFoundError",
    "ManualClock",
    "NotAcquired",
    "Stats",
    "Table",
    "library_version",
    "lock",
    "unlink",
]
