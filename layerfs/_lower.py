"""Lookups through a stack of overlay-format layers (whiteouts and opaque dirs).

Facts of overlayfs's format that these functions rely on (kernel overlayfs
with ``index=off``, ``redirect_dir=off``, ``metacopy=off``):

- a deleted name is a character device with device number 0/0;
- a directory whose ``<prefix>overlay.opaque`` xattr is ``y`` hides every
  entry below it in the layers underneath;
- a non-directory hides everything below its name in the layers underneath.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path


def is_whiteout(st: os.stat_result) -> bool:
    """True for overlay's whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str, opaque_xattr: str) -> bool:
    """True when the directory ``path`` carries the opaque xattr set to ``y``."""
    try:
        return os.getxattr(path, opaque_xattr, follow_symlinks=False) == b"y"
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOENT):
            return False
        raise


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def lookup(layers: Sequence[Path], parts: Sequence[str], opaque_xattr: str) -> str | None:
    """Find the visible entry for the relative path ``parts`` in ``layers`` (top first).

    Returns:
        The path of the topmost entry that the merged view shows, or None
        when the path is absent, whited out, or hidden by an opaque
        directory or a non-directory above it.
    """
    if not parts:
        return str(layers[0]) if layers else None
    for layer in layers:
        cur = str(layer)
        hidden_below = False
        for depth, part in enumerate(parts):
            cur = os.path.join(cur, part)
            st = _lstat(cur)
            if st is None:
                break
            if is_whiteout(st):
                return None
            if depth == len(parts) - 1:
                return cur
            if not stat.S_ISDIR(st.st_mode):
                return None
            if is_opaque(cur, opaque_xattr):
                hidden_below = True
        if hidden_below:
            return None
    return None


def merged_entries(
    layers: Sequence[Path], parts: Sequence[str], opaque_xattr: str
) -> dict[str, str]:
    """The entries the merged view shows in directory ``parts``: name -> topmost path.

    Each layer's directory is listed once, which is what makes native diff
    cheap: no per-entry lookups through the stack.
    """
    found: dict[str, str] = {}
    hidden: set[str] = set()
    for layer in layers:
        cur = str(layer)
        stop_after = False
        present = True
        for part in parts:
            cur = os.path.join(cur, part)
            st = _lstat(cur)
            if st is None:
                present = False
                break
            if is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                return found
            if is_opaque(cur, opaque_xattr):
                stop_after = True
        if present:
            for entry in os.scandir(cur):
                if entry.name in found or entry.name in hidden:
                    continue
                est = entry.stat(follow_symlinks=False)
                if is_whiteout(est):
                    hidden.add(entry.name)
                else:
                    found[entry.name] = entry.path
        if stop_after:
            break
    return found


def merged_names(layers: Sequence[Path], parts: Sequence[str], opaque_xattr: str) -> set[str]:
    """The names the merged view shows in directory ``parts`` across ``layers`` (top first)."""
    return set(merged_entries(layers, parts, opaque_xattr))
