"""Lookup through the layer stack, the way overlayfs's namei does it.

A name is looked up in the parent's merged directories, topmost first. The
first hit decides: a character device 0/0 is a whiteout (the name is
deleted, nothing below shows), a non-directory hides everything below, a
directory merges with same-named directories further down until one of
them is opaque (``<prefix>overlay.opaque`` = ``y``) or a non-directory or
whiteout stops the descent. What a whiteout and an opaque mark are is
``layerfs._overlayfmt``'s business; this module walks the node layers.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from typing import TYPE_CHECKING

from layerfs._overlayfmt import lower
from layerfs._overlayfmt.lower import lstat_or_none as _lstat
from layerfs._overlayfmt.marks import is_opaque, is_whiteout

if TYPE_CHECKING:
    from .fs import UnionFS

__all__ = ["is_whiteout", "resolve", "dir_layers", "lower_positive"]

_S_IFMT = 0o170000
_S_IFDIR = stat.S_IFDIR


def dir_layers(fs: UnionFS, path: bytes, candidates: Iterable[int]) -> tuple[int, ...]:
    """Layers among ``candidates`` whose ``path`` is a directory merged into the union one.

    The first candidate where ``path`` exists must hold a directory.
    """
    return lower.dir_layers(fs.roots, path, candidates, fs.opaque_xattr)


def resolve(
    fs: UnionFS, parent_layers: tuple[int, ...], path: bytes
) -> tuple[int, tuple[int, ...], os.stat_result] | None:
    """Find union ``path`` below a parent merged from ``parent_layers``.

    Returns:
        ``(layer, dir_layers, stat)`` of the topmost real object (``dir_layers``
        empty for a non-directory), or None when the name does not exist or is
        whited out.

    Raises:
        OSError: a real lookup failed for another reason than absence (EACCES, EIO).
    """
    roots = fs.roots
    for i, li in enumerate(parent_layers):
        st = _lstat(roots[li] + path)
        if st is None:
            continue
        if is_whiteout(st):
            return None
        if (st.st_mode & _S_IFMT) != _S_IFDIR:
            return li, (), st
        if is_opaque(roots[li] + path, fs.opaque_xattr) or i + 1 == len(parent_layers):
            return li, (li,), st
        return li, (li, *dir_layers(fs, path, parent_layers[i + 1 :])), st
    return None


def lower_positive(fs: UnionFS, parent_layers: tuple[int, ...], path: bytes) -> bool:
    """True when a lower layer (below the upper) shows something at ``path``.

    Decides whether removing or renaming away the upper object must leave a
    whiteout so the lower one stays hidden.
    """
    for li in parent_layers:
        if li < fs.first_lower:
            continue
        st = _lstat(fs.roots[li] + path)
        if st is None:
            continue
        return not is_whiteout(st)
    return False


def check_name(name: bytes) -> None:
    """Refuse names the kernel would never send (defence in depth).

    Raises:
        OSError: EINVAL for empty, ``.``, ``..`` or names with a slash.
    """
    if not name or name in (b".", b"..") or b"/" in name:
        raise OSError(errno.EINVAL, "bad name")
