"""openat2(2) with ``RESOLVE_IN_ROOT``: resolve a path as if ``dirfd`` were ``/``.

Linux 5.6 added openat2 (syscall 437 on every architecture, thanks to the
unified syscall table). ``RESOLVE_IN_ROOT`` makes absolute symlinks and
``..`` stop at ``dirfd``, as a chroot would, which is how container
runtimes resolve paths inside an image. Older kernels answer ENOSYS; the
caller then walks the path itself (``layerfs._scoped``).
"""

from __future__ import annotations

import ctypes
import errno
import os

from .libc import libc

SYS_OPENAT2 = 437
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

O_PATH = getattr(os, "O_PATH", 0o10000000)


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


libc.syscall.restype = ctypes.c_long

#: Set to False (tests do) to use the portable walk even where openat2 exists.
enabled = True
_missing = False


def available() -> bool:
    """True unless disabled or the kernel has already said it lacks openat2."""
    return enabled and not _missing


def open_in_root(dirfd: int, path: str, flags: int) -> int | None:
    """Open ``path`` relative to ``dirfd`` with every lookup kept inside ``dirfd``.

    Returns:
        The new fd, or None when the kernel has no openat2 (ENOSYS) or it
        is disabled; the caller falls back to its own walk.

    Raises:
        OSError: the kernel's errno (ENOENT, ENOTDIR, ELOOP, ...).
    """
    global _missing
    if not available():
        return None
    how = _OpenHow(flags | os.O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    while True:
        fd = libc.syscall(
            SYS_OPENAT2,
            ctypes.c_int(dirfd),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err in (errno.EAGAIN, errno.EINTR):
            continue  # a rename raced the lookup; the kernel asks us to retry
        if err in (errno.ENOSYS, errno.EPERM) and not _missing:
            # ENOSYS: kernel before 5.6; EPERM: a seccomp filter that blocks it.
            _missing = True
            return None
        raise OSError(err, os.strerror(err), path)
