"""The new mount API (Linux 5.2+): fsopen, fsconfig, fsmount, move_mount.

Unlike ``mount(2)``, which copies one page of options, the new API takes
one parameter per ``fsconfig`` call, so overlayfs's ``lowerdir+`` (Linux
6.8) can add lower layers one at a time up to the kernel's own stack limit.
When a call fails, the kernel leaves a human-readable reason in the
filesystem context; ``FsContext`` reads it back into the error.

The syscall numbers below are the same on every architecture except alpha
(they were allocated after the tables were unified in Linux 5.1).
"""

from __future__ import annotations

import ctypes
import os

from .libc import libc

__all__ = ["FsContext", "has_new_mount_api", "MOUNT_ATTR_RDONLY", "MOUNT_ATTR_NODEV"]

SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432

FSOPEN_CLOEXEC = 0x1
FSMOUNT_CLOEXEC = 0x1

FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4

MOVE_MOUNT_F_EMPTY_PATH = 0x4
AT_FDCWD = -100

_syscall = libc.syscall
_syscall.restype = ctypes.c_long


def _raise(what: str, log: str = "") -> None:
    err = ctypes.get_errno()
    msg = f"{what}: {os.strerror(err)}"
    if log:
        msg += f" ({log})"
    raise OSError(err, msg)


class FsContext:
    """A filesystem context from ``fsopen``, configured then mounted.

    Use it as a context manager so its file descriptor is always closed.

    Args:
        fstype: the filesystem type, e.g. ``"overlay"``.

    Raises:
        OSError: the kernel refused (``ENOSYS`` without the new API,
            ``ENODEV`` for an unknown type, ``EPERM`` without privileges).
    """

    def __init__(self, fstype: str) -> None:
        fd = _syscall(ctypes.c_long(SYS_FSOPEN), fstype.encode(), ctypes.c_uint(FSOPEN_CLOEXEC))
        if fd < 0:
            _raise(f"fsopen {fstype}")
        self.fd: int = int(fd)
        self.fstype = fstype

    def __enter__(self) -> FsContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the context's file descriptor. Idempotent."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def messages(self) -> str:
        """Drain and return the kernel's messages about this context ("e overlayfs: ...")."""
        out: list[str] = []
        for _ in range(32):
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out.append(chunk.decode(errors="replace").strip())
        return "; ".join(out)

    def set_string(self, key: str, value: str) -> None:
        """``fsconfig(FSCONFIG_SET_STRING, key, value)``; raises ``OSError``."""
        rc = _syscall(
            ctypes.c_long(SYS_FSCONFIG),
            ctypes.c_int(self.fd),
            ctypes.c_uint(FSCONFIG_SET_STRING),
            key.encode(),
            os.fsencode(value),
            ctypes.c_int(0),
        )
        if rc < 0:
            _raise(f"fsconfig {self.fstype} {key}={value}", self.messages())

    def set_flag(self, key: str) -> None:
        """``fsconfig(FSCONFIG_SET_FLAG, key)``; raises ``OSError``."""
        rc = _syscall(
            ctypes.c_long(SYS_FSCONFIG),
            ctypes.c_int(self.fd),
            ctypes.c_uint(FSCONFIG_SET_FLAG),
            key.encode(),
            None,
            ctypes.c_int(0),
        )
        if rc < 0:
            _raise(f"fsconfig {self.fstype} {key}", self.messages())

    def create(self) -> None:
        """``fsconfig(FSCONFIG_CMD_CREATE)``: build the superblock; raises ``OSError``."""
        rc = _syscall(
            ctypes.c_long(SYS_FSCONFIG),
            ctypes.c_int(self.fd),
            ctypes.c_uint(FSCONFIG_CMD_CREATE),
            None,
            None,
            ctypes.c_int(0),
        )
        if rc < 0:
            _raise(f"create {self.fstype} filesystem", self.messages())

    def mount(self, target: str, attrs: int = 0) -> None:
        """``fsmount`` the created superblock and ``move_mount`` it onto ``target``.

        Args:
            target: an existing directory.
            attrs: ``MOUNT_ATTR_*`` flags (``MOUNT_ATTR_RDONLY``...).

        Raises:
            OSError: the kernel refused.
        """
        mfd = _syscall(
            ctypes.c_long(SYS_FSMOUNT),
            ctypes.c_int(self.fd),
            ctypes.c_uint(FSMOUNT_CLOEXEC),
            ctypes.c_uint(attrs),
        )
        if mfd < 0:
            _raise(f"fsmount {self.fstype}", self.messages())
        try:
            rc = _syscall(
                ctypes.c_long(SYS_MOVE_MOUNT),
                ctypes.c_int(int(mfd)),
                b"",
                ctypes.c_int(AT_FDCWD),
                os.fsencode(target),
                ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH),
            )
            if rc < 0:
                _raise(f"move_mount {self.fstype} onto {target}")
        finally:
            os.close(int(mfd))


def has_new_mount_api(fstype: str = "overlay") -> bool:
    """True when ``fsopen(fstype)`` works here (needs Linux 5.2+ and privileges)."""
    try:
        FsContext(fstype).close()
        return True
    except OSError:
        return False
