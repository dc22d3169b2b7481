"""File-system syscalls the stdlib lacks: renameat2(2) with its flags."""

from __future__ import annotations

import ctypes
import os

from .libc import check, libc

AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
RENAME_WHITEOUT = 4

libc.renameat2.argtypes = [
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_int,
    ctypes.c_char_p,
    ctypes.c_uint,
]


def renameat2(old: bytes, new: bytes, flags: int) -> None:
    """rename(2) ``old`` to ``new`` with RENAME_* ``flags``.

    Raises:
        OSError: the kernel's errno (EINVAL when the filesystem lacks a flag).
    """
    check(
        libc.renameat2(AT_FDCWD, old, AT_FDCWD, new, flags),
        "renameat2",
        os.fsdecode(new),
    )


libc.fallocate64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """fallocate(2) with its ``mode`` flags (KEEP_SIZE, PUNCH_HOLE, ZERO_RANGE...).

    Raises:
        OSError: the kernel's errno (EOPNOTSUPP for a mode the filesystem lacks).
    """
    check(libc.fallocate64(fd, mode, offset, length), "fallocate")
