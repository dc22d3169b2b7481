"""Union inodes: attributes, setattr, xattrs and statfs (the node table is ``nodes``)."""

from __future__ import annotations

import errno
import os
import stat
import time
from typing import TYPE_CHECKING

from .copy_up import copy_up
from .nodes import Node

if TYPE_CHECKING:
    from .fs import UnionFS

__all__ = ["Node", "getattr_node", "setattr_node", "statfs"]


def getattr_node(fs: UnionFS, node: Node, fd: int = -1) -> os.stat_result:
    """Return the real ``stat`` of ``node`` (via ``fd`` when given or when unlinked).

    Raises:
        OSError: the real object is gone (a lower layer vanished: EIO).
    """
    if fd < 0 and node.unlinked and node.open_fds:
        fd = node.open_fds[0]
    if fd >= 0:
        return os.fstat(fd)
    try:
        return os.lstat(b"." + node.path, dir_fd=fs.root_fds[node.layer])
    except FileNotFoundError:
        # The layer changed under us (a lower layer deleted): not a user error.
        raise OSError(errno.EIO, "real file vanished") from None


def setattr_node(
    fs: UnionFS,
    node: Node,
    *,
    fd: int,
    mode: int | None,
    uid: int | None,
    gid: int | None,
    size: int | None,
    atime_ns: int | None,
    mtime_ns: int | None,
) -> None:
    """Apply a setattr to ``node``, copying it up first.

    ``None`` leaves a field alone. ``fd`` is an open handle (or -1), used for
    a truncate so it works on unlinked files too.

    Raises:
        OSError: EROFS without an upper layer; the real syscall's errno.
    """
    copy_up(fs, node, data=not (size == 0))
    path = fs.roots[node.layer] + node.path
    is_link = node.fmt == stat.S_IFLNK
    if uid is not None or gid is not None:
        os.lchown(path, -1 if uid is None else uid, -1 if gid is None else gid)
    if mode is not None and not is_link:
        os.chmod(path, stat.S_IMODE(mode))
    if size is not None:
        if fd >= 0:
            os.ftruncate(fd, size)
        else:
            os.truncate(path, size)
    if atime_ns is not None or mtime_ns is not None:
        if atime_ns is None or mtime_ns is None:
            st = os.lstat(path)
            atime_ns = st.st_atime_ns if atime_ns is None else atime_ns
            mtime_ns = st.st_mtime_ns if mtime_ns is None else mtime_ns
        os.utime(path, ns=(atime_ns, mtime_ns), follow_symlinks=False)


def now_ns() -> int:
    """The current time for ``*_NOW`` setattr bits."""
    return time.time_ns()


# -- xattrs ----------------------------------------------------------------------------
#
# As overlay (Linux 6.7+), names in overlay's own namespace are escaped: a
# user's "<prefix>overlay.X" is stored as "<prefix>overlay.overlay.X" on the
# real file, and overlay's real markers (opaque...) are never visible.


def _real_name(fs: UnionFS, name: bytes) -> bytes:
    own = fs.own_xattr_prefix
    if name.startswith(own):
        # trusted.overlay.X -> trusted.overlay.overlay.X
        return own + name[len(own) - len(b"overlay.") :]
    return name


#: The kernel asks for this one before every write and chown of a file
#: (to know whether file capabilities must be dropped). Only SETXATTR through
#: the union can add it (layers do not change under a mount, copy-up keeps
#: xattrs, chown/write/truncate only remove it), so its absence is cached
#: per node and the probe answered without a syscall.
CAPS_XATTR = b"security.capability"


def getxattr(fs: UnionFS, node: Node, name: bytes) -> bytes:
    """Return xattr ``name`` of ``node`` (overlay's own names escaped like overlay does).

    Raises:
        OSError: ENODATA when absent.
    """
    if name == CAPS_XATTR:
        if node.nocaps:
            raise OSError(errno.ENODATA, "no such attribute")
        try:
            return os.getxattr(fs.roots[node.layer] + node.path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                node.nocaps = True
            raise
    return os.getxattr(
        fs.roots[node.layer] + node.path, _real_name(fs, name), follow_symlinks=False
    )


def listxattr(fs: UnionFS, node: Node) -> list[bytes]:
    """Return the xattr names of ``node``; overlay's markers hidden, escaped names unescaped."""
    names = os.listxattr(fs.roots[node.layer] + node.path, follow_symlinks=False)
    own = fs.own_xattr_prefix.decode()
    escaped = own + "overlay."
    out = []
    for n in names:
        if n.startswith(escaped):
            out.append((own + n[len(escaped) :]).encode())
        elif not n.startswith(own):
            out.append(n.encode())
    return out


def setxattr(fs: UnionFS, node: Node, name: bytes, value: bytes, flags: int) -> None:
    """Set an xattr on ``node`` after copying it up.

    Raises:
        OSError: EROFS without upper; the real errno.
    """
    copy_up(fs, node)
    node.nocaps = False
    os.setxattr(
        fs.roots[node.layer] + node.path, _real_name(fs, name), value, flags, follow_symlinks=False
    )


def removexattr(fs: UnionFS, node: Node, name: bytes) -> None:
    """Remove an xattr from ``node`` after copying it up.

    Raises:
        OSError: ENODATA when absent (checked before any copy-up).
    """
    real_name = _real_name(fs, name)
    os.getxattr(fs.roots[node.layer] + node.path, real_name, follow_symlinks=False)
    copy_up(fs, node)
    os.removexattr(fs.roots[node.layer] + node.path, real_name, follow_symlinks=False)


def statfs(fs: UnionFS) -> os.statvfs_result:
    """Return ``statvfs`` of the upper layer (the top lower one when read-only)."""
    return os.statvfs(fs.roots[0])
