"""Reading a stack of overlay-format layers: lookups and merged listings.

Layers are given top first. A whiteout ends the search for its name, a
non-directory hides what is below its name, an opaque directory hides the
layers below it (see the package docstring).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import AnyStr

from .marks import is_opaque, is_whiteout

__all__ = ["lstat_or_none", "lookup", "merged_entries", "merged_names", "dir_layers"]


def lstat_or_none(path: str | bytes, dir_fd: int | None = None) -> os.stat_result | None:
    """``lstat`` of ``path`` (relative to ``dir_fd`` when given), or None when it (or a
    directory above it) is not there."""
    try:
        return os.lstat(path, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None


def dir_layers(
    roots: Sequence[AnyStr],
    path: AnyStr,
    candidates: Iterable[int],
    opaque_xattr: AnyStr,
    root_fds: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """Indexes among ``candidates`` whose ``roots[i] + path`` merges into one directory.

    Candidates are taken in order: absent ones are skipped, the first that
    holds a non-directory ends the list, an opaque directory is the last one.
    ``root_fds`` (an open fd per root, as a server keeps them) makes each
    stat walk from the root's fd instead of resolving the whole path again.
    """
    found: list[int] = []
    rel = (b"." if isinstance(path, bytes) else ".") + path  # type: ignore[operator]
    for li in candidates:
        real = roots[li] + path
        st = lstat_or_none(real) if root_fds is None else lstat_or_none(rel, root_fds[li])
        if st is None:
            continue
        if not stat.S_ISDIR(st.st_mode):
            break
        found.append(li)
        if is_opaque(real, opaque_xattr):
            break
    return tuple(found)


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
            st = lstat_or_none(cur)
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
            st = lstat_or_none(cur)
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
