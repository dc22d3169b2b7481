"""Every change to the upper layer and the workdir goes through these wrappers.

One choke point to read, trace (``layerfs.fuse`` logger at DEBUG) and test.
They take real paths (bytes) and raise ``OSError`` with the real errno.
"""

from __future__ import annotations

import logging
import os
import stat

from layerfs._overlayfmt import marks
from layerfs._sys import fsops

log = logging.getLogger("layerfs.fuse.upper")


def do_whiteout(path: bytes) -> None:
    """Create a whiteout (character device 0/0) at ``path``."""
    log.debug("whiteout %r", path)
    marks.make_whiteout(path)


def do_mkdir(path: bytes, mode: int) -> None:
    """mkdir ``path``."""
    log.debug("mkdir %r %o", path, mode)
    os.mkdir(path, mode)


def do_rename(old: bytes, new: bytes, flags: int = 0) -> None:
    """rename ``old`` to ``new`` (renameat2 flags: RENAME_EXCHANGE, RENAME_WHITEOUT...)."""
    log.debug("rename %r -> %r flags=%d", old, new, flags)
    if flags:
        fsops.renameat2(old, new, flags)
    else:
        os.rename(old, new)


def do_unlink(path: bytes) -> None:
    """unlink ``path``."""
    log.debug("unlink %r", path)
    os.unlink(path)


def do_rmdir(path: bytes) -> None:
    """rmdir ``path``."""
    log.debug("rmdir %r", path)
    os.rmdir(path)


def do_set_opaque(path: bytes, xattr: bytes) -> None:
    """Mark directory ``path`` opaque."""
    log.debug("opaque %r", path)
    marks.set_opaque(path, xattr)


def do_set_owner(path: bytes, uid: int, gid: int, mode: int | None) -> None:
    """Give ``path`` to ``uid:gid``, then restore set-id bits of ``mode`` that chown drops."""
    os.lchown(path, uid, gid)
    if mode is not None and mode & 0o7000:
        os.chmod(path, stat.S_IMODE(mode))


def clear_whiteouts(path: bytes) -> None:
    """Remove the whiteouts inside upper directory ``path`` (it must hold nothing else).

    Raises:
        OSError: ENOTEMPTY when something else is in it.
    """
    for entry in os.scandir(path):
        if not marks.is_whiteout(entry.stat(follow_symlinks=False)):
            raise OSError(39, "directory not empty")  # ENOTEMPTY
        do_unlink(entry.path)
