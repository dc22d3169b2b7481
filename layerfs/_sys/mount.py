"""mount(2), umount2(2) and a reader for /proc/self/mountinfo."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .libc import check, libc

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21

MNT_FORCE = 1
MNT_DETACH = 2

libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(
    source: str, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    """Call mount(2); raises ``OSError`` with the kernel's errno."""
    check(
        libc.mount(
            os.fsencode(source),
            os.fsencode(target),
            fstype.encode() if fstype else None,
            flags,
            os.fsencode(data) if data else None,
        ),
        f"mount {fstype or ''} {source} on {target}",
        target,
    )


def umount(target: str, flags: int = 0) -> None:
    """Call umount2(2); raises ``OSError`` with the kernel's errno."""
    check(libc.umount2(os.fsencode(target), flags), f"umount {target}", target)


@dataclass(frozen=True)
class MountInfo:
    """One line of /proc/self/mountinfo."""

    mount_id: int
    parent_id: int
    root: str
    target: str
    fstype: str
    source: str
    options: str
    super_options: str


def unescape(field: str) -> str:
    """Undo mountinfo's escaping of space, tab, newline and backslash (``\\ooo`` octal)."""
    if "\\" not in field:
        return field
    out = bytearray()
    raw = field.encode()
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C and i + 3 < len(raw) + 1 and raw[i + 1 : i + 4].isdigit():
            out.append(int(raw[i + 1 : i + 4], 8))
            i += 4
        else:
            out.append(raw[i])
            i += 1
    return out.decode(errors="surrogateescape")


def mountinfo(pid: str = "self") -> Iterator[MountInfo]:
    """Yield the mounts visible to ``pid``, in mount order."""
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.rstrip("\n").partition(" - ")
            a = left.split(" ")
            b = right.split(" ")
            yield MountInfo(
                mount_id=int(a[0]),
                parent_id=int(a[1]),
                root=unescape(a[3]),
                target=unescape(a[4]),
                fstype=b[0],
                source=unescape(b[1]) if len(b) > 1 else "",
                options=a[5],
                super_options=b[2] if len(b) > 2 else "",
            )


def mounts_under(path: str) -> list[MountInfo]:
    """Return mounts whose target is ``path`` or below it, deepest last."""
    path = os.path.realpath(path)
    prefix = path.rstrip("/") + "/"
    return [m for m in mountinfo() if m.target == path or m.target.startswith(prefix)]


def is_mountpoint(path: str) -> bool:
    """True when something is mounted exactly on ``path``.

    Only the parent is resolved: resolving ``path`` itself would stat the
    mounted filesystem's root, which blocks on a stopped FUSE server.
    """
    path = os.path.abspath(path).rstrip("/") or "/"
    path = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    return any(m.target == path for m in mountinfo())
