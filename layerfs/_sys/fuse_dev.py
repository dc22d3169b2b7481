"""ioctls on /dev/fuse and the mount(2) of a FUSE filesystem (reflinks: ``clone``).

Facts this module relies on:

- ``FUSE_DEV_IOC_CLONE`` (``_IOR(229, 0, uint32_t)``, Linux 4.2) attaches a
  freshly opened ``/dev/fuse`` fd to the connection of another one, so
  several threads can each block in ``read(2)`` on their own fd and the
  kernel hands every request to exactly one of them.
- ``FUSE_DEV_IOC_BACKING_OPEN`` (``_IOW(229, 1, struct fuse_backing_map)``,
  Linux 6.9) registers an open file as the backing file of a passthrough
  open and returns a positive backing id; ``FUSE_DEV_IOC_BACKING_CLOSE``
  (``_IOW(229, 2, uint32_t)``) drops it. Both need CAP_SYS_ADMIN in the
  initial user namespace. The backing file stays referenced by the kernel
  while any FUSE file opened with that id is open, even after the close.
- A FUSE mount is ``mount(source, target, "fuse.<subtype>", flags,
  "fd=N,rootmode=40000,user_id=U,group_id=G[,allow_other][,default_permissions]")``
  where N is an open ``/dev/fuse`` fd; the kernel sends ``FUSE_INIT`` on it
  once the mount exists.
- Every connection has ``/sys/fs/fuse/connections/<dev>/abort``; writing to it
  fails all pending and future requests with ``ENOTCONN``. ``<dev>`` is the
  kernel's internal dev_t of the superblock: ``major << 20 | minor``.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import struct

from .libc import check, libc

FUSE_DEV_IOC_CLONE = 0x8004E500
FUSE_DEV_IOC_BACKING_OPEN = 0x4010E501
FUSE_DEV_IOC_BACKING_CLOSE = 0x4004E502

CONNECTIONS = "/sys/fs/fuse/connections"

_BACKING_MAP = struct.Struct("=iIQ")
_U32 = struct.Struct("=I")


def open_device() -> int:
    """Open ``/dev/fuse`` close-on-exec and return the fd.

    Raises:
        OSError: the device is missing (ENOENT) or not accessible (EACCES).
    """
    return os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)


def clone(session_fd: int) -> int:
    """Open a new ``/dev/fuse`` fd attached to the connection of ``session_fd``.

    Raises:
        OSError: the kernel has no FUSE_DEV_IOC_CLONE (EINVAL/ENOTTY).
    """
    fd = open_device()
    try:
        fcntl.ioctl(fd, FUSE_DEV_IOC_CLONE, _U32.pack(session_fd))
    except OSError:
        os.close(fd)
        raise
    return fd


def backing_open(dev_fd: int, file_fd: int) -> int:
    """Register ``file_fd`` as a passthrough backing file; return its backing id.

    Raises:
        OSError: EPERM without CAP_SYS_ADMIN, EOPNOTSUPP when passthrough
            was not negotiated, ELOOP when the file is too deeply stacked.
    """
    # A mutable buffer makes fcntl.ioctl return the ioctl's result (the id);
    # cheaper than a ctypes call, and this runs on every passthrough open.
    return fcntl.ioctl(
        dev_fd, FUSE_DEV_IOC_BACKING_OPEN, bytearray(_BACKING_MAP.pack(file_fd, 0, 0))
    )


def backing_close(dev_fd: int, backing_id: int) -> None:
    """Drop a backing id returned by ``backing_open``."""
    fcntl.ioctl(dev_fd, FUSE_DEV_IOC_BACKING_CLOSE, _U32.pack(backing_id))


def mount_options(
    fd: int,
    *,
    rootmode: int = 0o40000,
    uid: int = 0,
    gid: int = 0,
    allow_other: bool = True,
    default_permissions: bool = True,
    max_read: int = 0,
) -> str:
    """Return the data string of a FUSE ``mount(2)``."""
    opts = [f"fd={fd}", f"rootmode={rootmode:o}", f"user_id={uid}", f"group_id={gid}"]
    if allow_other:
        opts.append("allow_other")
    if default_permissions:
        opts.append("default_permissions")
    if max_read:
        opts.append(f"max_read={max_read}")
    return ",".join(opts)


def mount_fuse(fd: int, target: str, subtype: str, source: str, flags: int, data: str) -> None:
    """mount(2) a FUSE filesystem served on ``fd`` at ``target``.

    Args:
        fd: the open ``/dev/fuse`` fd (must be named in ``data`` as ``fd=``).
        target: the mount point.
        subtype: shown as ``fuse.<subtype>`` in /proc/mounts.
        source: the mount source shown in /proc/mounts.
        flags: MS_* flags (MS_RDONLY, MS_NOSUID, MS_NODEV...).
        data: see ``mount_options``.

    Raises:
        OSError: the kernel's errno.
    """
    libc.mount.argtypes = [
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    ]
    check(
        libc.mount(
            os.fsencode(source),
            os.fsencode(target),
            f"fuse.{subtype}".encode(),
            flags,
            data.encode(),
        ),
        f"mount fuse.{subtype} on {target}",
        target,
    )


def connection_name(major: int, minor: int) -> str:
    """Name of the connection dir under /sys/fs/fuse/connections for a device."""
    return str((major << 20) | minor)


def abort_connection(name: str) -> bool:
    """Abort FUSE connection ``name``; return False when it does not exist."""
    try:
        with open(f"{CONNECTIONS}/{name}/abort", "w") as f:
            f.write("1")
        return True
    except FileNotFoundError:
        return False


def ensure_fusectl() -> bool:
    """Mount the fusectl filesystem on /sys/fs/fuse/connections if it is not there.

    Returns:
        True when the connections directory is usable.
    """
    try:
        with open("/proc/self/mounts") as f:
            if any(line.split(" ")[2] == "fusectl" for line in f):
                return True
        from .mount import mount

        mount("fusectl", CONNECTIONS, "fusectl")
        return True
    except OSError:
        return False
