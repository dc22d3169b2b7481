"""File-system syscalls the stdlib lacks: renameat2(2) with its flags, syncfs(2), fallocate(2)."""

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


libc.syncfs.argtypes = [ctypes.c_int]


def syncfs(path: str | os.PathLike[str]) -> None:
    """Write back everything dirty on the filesystem holding ``path`` (syncfs(2)).

    Raises:
        OSError: opening ``path`` failed, or the kernel's errno (EIO: data was lost).
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        check(libc.syncfs(fd), "syncfs", os.fspath(path))
    finally:
        os.close(fd)
