"""Counting the inodes a thin device's filesystem uses.

dm-thin knows blocks, not files, so the inode count comes from the
filesystem: ``statvfs`` on a mount of the device (an existing one when the
device is mounted, else a short read-only mount in a scratch directory).
"""

from __future__ import annotations

import os
from pathlib import Path

from layerfs import errors
from layerfs._mounting import mount_one, unmount_path
from layerfs._sys.mount import mountinfo
from layerfs._types import Mount

__all__ = ["used_inodes"]


def _count(path: str) -> int:
    st = os.statvfs(path)
    return st.f_files - st.f_ffree


def used_inodes(node: str, fs: str, scratch: Path) -> int:
    """Return the inodes in use on the filesystem of device ``node``.

    Args:
        node: the device node (``/dev/mapper/<name>``).
        fs: ``ext4`` or ``xfs``.
        scratch: a directory for a temporary mount point.

    Raises:
        errors.LayerfsError: the device cannot be mounted read-only.
    """
    for m in mountinfo():
        if m.source == node:
            return _count(m.target)
    scratch.mkdir(parents=True, exist_ok=True)
    target = scratch / os.path.basename(node)
    target.mkdir(exist_ok=True)
    try:
        opts: tuple[str, ...] = ("ro", "nouuid") if fs == "xfs" else ("ro",)
        mount_one(Mount(fs, node, opts), str(target))
        try:
            return _count(str(target))
        finally:
            unmount_path(str(target), attempts=5)
    except OSError as exc:
        raise errors.from_oserror(exc, f"count inodes of {node}") from exc
    finally:
        try:
            target.rmdir()
        except OSError:
            pass
