"""The store's storage lock: creators and removers share it, ``check`` takes it alone.

The database says which snapshot ids exist, but a create or a removal
changes the driver's storage in steps outside any transaction (a staging
directory renamed into place, a trash directory emptied). A ``check`` that
looked at storage in the middle of such steps would take live work for a
leftover and delete it. So every create and removal holds this lock
shared, from its first database write to its last, and ``check`` holds it
exclusively while it compares storage with the records: what it then finds
and does not know is provably dead.

The lock is ``flock(2)`` on ``<root>/storage.lock``, opened anew for each
hold, so two holds in one process (two ``Store`` objects, two threads) are
independent and the kernel drops the lock of a process that dies.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from . import errors

LOCK_NAME = "storage.lock"


@contextlib.contextmanager
def storage_lock(root: Path, *, exclusive: bool, timeout: float = 60.0) -> Iterator[None]:
    """Hold the store's storage lock for the block.

    Args:
        root: the store root.
        exclusive: True for ``check``; False for creates and removals.
        timeout: seconds to wait before giving up.

    Raises:
        errors.Busy: the lock was not free within ``timeout``.
    """
    path = root / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise errors.from_oserror(exc, f"open the storage lock {path}") from exc
    try:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise errors.from_oserror(exc, f"lock {path}") from exc
            if time.monotonic() > deadline:
                what = "check" if exclusive else "create or remove"
                raise errors.Busy(
                    f"store {root}: another process held the storage lock for {timeout:g}s; "
                    f"retry the {what}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        yield
    finally:
        os.close(fd)
