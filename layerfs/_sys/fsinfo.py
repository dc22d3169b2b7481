"""statfs(2) filesystem type and readdir(3) d_type, which the stdlib does not expose."""

from __future__ import annotations

import ctypes
import os

from .libc import check, libc

__all__ = ["fs_type", "fs_type_name", "dir_has_dtype", "FS_MAGIC"]

#: Filesystem magic numbers from statfs(2) (include/uapi/linux/magic.h).
FS_MAGIC: dict[int, str] = {
    0xEF53: "ext4",
    0x58465342: "xfs",
    0x9123683E: "btrfs",
    0x01021994: "tmpfs",
    0x858458F6: "ramfs",
    0x794C7630: "overlay",
    0x65735546: "fuse",
    0x6969: "nfs",
    0xFF534D42: "cifs",
    0x2FC12FC1: "zfs",
    0xF15F: "ecryptfs",
    0x61756673: "aufs",
    0x73717368: "squashfs",
    0x4D44: "vfat",
    0x5346414F: "afs",
    0xF2F52010: "f2fs",
    0x9FA0: "proc",
}

libc.statfs.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
libc.opendir.argtypes = [ctypes.c_char_p]
libc.opendir.restype = ctypes.c_void_p
libc.readdir.argtypes = [ctypes.c_void_p]
libc.readdir.restype = ctypes.c_void_p
libc.closedir.argtypes = [ctypes.c_void_p]

DT_UNKNOWN = 0


class _Dirent(ctypes.Structure):
    # glibc's struct dirent on 64-bit Linux (same layout as dirent64).
    _fields_ = [
        ("d_ino", ctypes.c_uint64),
        ("d_off", ctypes.c_int64),
        ("d_reclen", ctypes.c_ushort),
        ("d_type", ctypes.c_ubyte),
        ("d_name", ctypes.c_char * 256),
    ]


def fs_type(path: str) -> int:
    """Return statfs(2)'s ``f_type`` for ``path``; raises ``OSError``."""
    buf = ctypes.create_string_buffer(256)  # larger than struct statfs everywhere
    check(libc.statfs(os.fsencode(path), buf), f"statfs {path}", path)
    return ctypes.c_long.from_buffer(buf).value & 0xFFFFFFFF


def fs_type_name(magic: int) -> str:
    """A readable name for a statfs magic number (hex when unknown)."""
    return FS_MAGIC.get(magic, f"0x{magic:x}")


def dir_has_dtype(path: str) -> bool | None:
    """Whether the filesystem fills ``d_type`` in directory entries of ``path``.

    Looks at entries other than ``.`` and ``..`` (some filesystems type those
    two even without d_type support).

    Returns:
        True or False, or None when ``path`` has no other entry to judge by.

    Raises:
        OSError: ``path`` cannot be read.
    """
    d = libc.opendir(os.fsencode(path))
    if not d:
        err = ctypes.get_errno()
        raise OSError(err, f"opendir {path}: {os.strerror(err)}", path)
    try:
        while True:
            p = libc.readdir(d)
            if not p:
                return None
            ent = _Dirent.from_address(p)
            if ent.d_name in (b".", b".."):
                continue
            return ent.d_type != DT_UNKNOWN
    finally:
        libc.closedir(d)
