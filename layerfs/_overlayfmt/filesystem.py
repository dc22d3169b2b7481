"""Can a filesystem hold overlay-format layers? Checks shared by ``overlay`` and ``fuse``.

Overlay-format layers are directories with whiteouts as 0/0 character
devices and ``<prefix>overlay.*`` xattrs on opaque directories (see the
package docstring), so their filesystem needs xattrs in the store's
namespace and must not be overlayfs itself. The ``overlay`` driver's own
probes (kernel features, upper-layer requirements) build on these.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from layerfs._sys import fsinfo
from layerfs.driver import is_privileged

from .marks import opaque_xattr

__all__ = ["format_problem", "xattr_problem", "existing_ancestor", "fs_name", "instead"]


def existing_ancestor(path: Path) -> Path:
    """``path``, or its nearest ancestor that exists (a store root may not exist yet)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


_WHERE_INSTEAD = (
    "put the store root on a real or loop-backed filesystem (ext4, xfs, btrfs or tmpfs)"
)


def instead(fs: str) -> str:
    """What to do instead of keeping a store on a ``fs`` filesystem (for error messages)."""
    if fs == "overlay":
        # The common case: a store under a container's own root filesystem.
        return _WHERE_INSTEAD + ", e.g. a volume mounted into the container"
    return _WHERE_INSTEAD


def fs_name(where: Path) -> str:
    """The type name of the filesystem holding ``where`` (``ext4``, ``overlay``...)."""
    return fsinfo.fs_type_name(fsinfo.fs_type(str(where)))


def xattr_problem(where: Path, fs: str) -> str | None:
    """Say why the filesystem of ``where`` cannot hold overlay xattrs, or None.

    Asks for ``<prefix>overlay.opaque`` (``trusted.`` when privileged,
    ``user.`` when not): "no such attribute" means the namespace works,
    EOPNOTSUPP that the filesystem has no such xattrs (ramfs; tmpfs before
    Linux 6.6 for ``user.``). Creates nothing.
    """
    prefix = "trusted." if is_privileged() else "user."
    try:
        os.getxattr(where, opaque_xattr(prefix))
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            return (
                f"the {fs} filesystem holding {where} has no {prefix}* xattrs, which mark "
                f"opaque directories in overlay-format layers; {instead(fs)}"
            )
    return None


def format_problem(path: Path) -> str | None:
    """Say why overlay-format layers (shared by ``overlay`` and ``fuse``) cannot live at ``path``.

    Such layers are directories with whiteouts as 0/0 character devices and
    ``overlay.*`` xattrs on opaque directories. On overlayfs itself (a
    container's root filesystem) a 0/0 device created through the mount
    turns into a whiteout and vanishes, and the ``overlay.*`` xattrs are
    reserved; other filesystems may have no xattrs at all. Creates nothing.
    """
    where = existing_ancestor(path)
    try:
        fs = fs_name(where)
    except OSError as exc:
        return f"cannot statfs {where}: {exc.strerror}"
    if fs == "overlay":
        return (
            f"{where} is on overlay, which hides the whiteouts and refuses the overlay.* "
            f"xattrs that overlay-format layers are made of; {instead(fs)}"
        )
    return xattr_problem(where, fs)
