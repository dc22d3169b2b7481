"""Merged directory listings.

A listing is the union of the names of every directory merged into the
node, topmost first: a name seen in a higher layer hides the same name
below, and a whiteout hides it without being listed. The list is taken
once, when the directory is opened, so offsets stay stable for the life of
the handle whatever happens to the directory meanwhile (as overlay caches
its merged list per open directory).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from layerfs._overlayfmt.marks import is_whiteout

from .inode import Node

if TYPE_CHECKING:
    from .fs import UnionFS

__all__ = ["DirHandle", "merged_names", "snapshot"]

DT_UNKNOWN = 0
DT_DIR = 4
DT_REG = 8
DT_LNK = 10


class DirHandle:
    """An open directory: the snapshot of its merged entries.

    Attributes:
        node: the directory node.
        entries: ``(name, d_type, ino)`` tuples, ``.`` and ``..`` first.
    """

    __slots__ = ("node", "entries")

    def __init__(self, node: Node, entries: list[tuple[bytes, int, int]]) -> None:
        self.node = node
        self.entries = entries


def _scan(fs: UnionFS, node: Node, want_types: bool) -> list[tuple[bytes, int, int]]:
    seen: set[bytes] = set()
    out: list[tuple[bytes, int, int]] = []
    by_path = fs.nodes.by_path
    for li in node.dlayers:
        real = fs.roots[li] + node.path
        with os.scandir(real) as it:
            for entry in it:
                name = entry.name
                if name in seen:
                    continue
                seen.add(name)
                if entry.is_dir(follow_symlinks=False):
                    dtype = DT_DIR
                elif entry.is_file(follow_symlinks=False):
                    dtype = DT_REG
                elif entry.is_symlink():
                    dtype = DT_LNK
                else:
                    st = entry.stat(follow_symlinks=False)
                    if is_whiteout(st):
                        continue  # whiteout: hides lower names, not listed
                    dtype = stat.S_IFMT(st.st_mode) >> 12
                if want_types:
                    known = by_path.get(node.path + b"/" + name)
                    ino = known.ino if known is not None else entry.inode()
                    out.append((name, dtype, ino))
                else:
                    out.append((name, dtype, 0))
    return out


def merged_names(fs: UnionFS, node: Node) -> list[tuple[bytes, int, int]]:
    """The visible entries of directory ``node`` (no ``.``/``..``)."""
    return _scan(fs, node, want_types=False)


def snapshot(fs: UnionFS, node: Node) -> DirHandle:
    """Take the merged listing of ``node`` for a new open directory."""
    parent = node.parent or node
    entries = [(b".", DT_DIR, node.ino), (b"..", DT_DIR, parent.ino)]
    entries += _scan(fs, node, want_types=True)
    return DirHandle(node, entries)
