"""Whiteouts, opaque directories and overlay's xattr namespace.

See the package docstring for the format facts. Functions take ``str`` or
``bytes`` paths (the ``fuse`` driver works in bytes).
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = [
    "OVERLAY_XATTRS",
    "is_whiteout",
    "make_whiteout",
    "is_opaque",
    "set_opaque",
    "opaque_xattr",
    "is_image_xattr",
    "is_private_xattr",
]

#: overlay's own xattr namespaces, under either prefix: never part of an image.
OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")

_S_IFMT = 0o170000
_S_IFCHR = stat.S_IFCHR
#: Absent, or unreadable in a way that means "not marked". Kernel overlayfs
#: reads a mark it may not read (EACCES, EPERM: a ``user.`` xattr on a
#: directory its mounter cannot read) as absent too.
_NOT_MARKED = (
    errno.ENODATA,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.ENOENT,
    errno.EACCES,
    errno.EPERM,
)


def is_whiteout(st: os.stat_result) -> bool:
    """True for overlay's whiteout: a character device with device number 0/0."""
    return (st.st_mode & _S_IFMT) == _S_IFCHR and st.st_rdev == 0


def make_whiteout(path: str | bytes) -> None:
    """Create a whiteout at ``path`` (mode 000, as the kernel makes them).

    Raises:
        OSError: EEXIST when something is there; EPERM without CAP_MKNOD
            (kernels before 5.8 refuse 0/0 in a user namespace).
    """
    os.mknod(path, _S_IFCHR, os.makedev(0, 0))


def opaque_xattr(prefix: str) -> str:
    """The name of the opaque mark under xattr ``prefix`` (``trusted.`` or ``user.``)."""
    return prefix + "overlay.opaque"


def is_opaque(path: str | bytes, xattr: str | bytes) -> bool:
    """True when the directory ``path`` carries the opaque mark ``xattr`` set to ``y``.

    Raises:
        OSError: reading the xattr failed otherwise than by its absence.
    """
    try:
        return os.getxattr(path, xattr, follow_symlinks=False) == b"y"
    except OSError as exc:
        if exc.errno in _NOT_MARKED:
            return False
        raise


def set_opaque(path: str | bytes, xattr: str | bytes) -> None:
    """Mark the directory ``path`` opaque with ``xattr``."""
    os.setxattr(path, xattr, b"y", follow_symlinks=False)


def is_image_xattr(name: str) -> bool:
    """True for an xattr an image may carry: outside overlay's namespace under either prefix."""
    return not name.startswith(OVERLAY_XATTRS)


def is_private_xattr(name: str, prefix: str) -> bool:
    """True for a name overlay keeps for itself under ``prefix`` (not user data).

    ``<prefix>overlay.X`` is overlay's; ``<prefix>overlay.overlay.X`` is a
    user's ``<prefix>overlay.X`` stored escaped, and is user data.
    """
    own = prefix + "overlay."
    return name.startswith(own) and not name.startswith(own + "overlay.")
