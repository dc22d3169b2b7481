"""The node table: union inodes by FUSE node id and by union path.

A node is one name in the union tree as the kernel knows it (one FUSE node
id). It remembers which layer holds its topmost real object and, for a
directory, every layer whose directory is merged into it (topmost first,
stopping at an opaque one). Nodes are found by node id (kernel requests)
and by union path (to give the same node id back for the same name, which
keeps ``st_ino`` and the kernel's inode stable across copy-up).

``st_ino`` is the inode number of the real object where the node was first
seen; a copy-up keeps it, so it does not change while the node lives.

This module imports nothing else of the package: every other module may use it.
"""

from __future__ import annotations

import errno
import stat
import threading

__all__ = ["Node", "NodeTable"]


class Node:
    """One union inode.

    Attributes:
        nodeid: the FUSE node id.
        parent: the parent directory's node (None for the root).
        path: union path with a leading slash (``b""`` for the root).
        layer: index (into ``UnionFS.roots``) of the topmost real object.
        dlayers: for a directory, the layers merged into it, topmost first.
        fmt: the ``S_IFMT`` bits of the file type.
        ino: the ``st_ino`` reported.
        nlookup: the kernel's lookup count.
        unlinked: the name is gone; only open handles still reach it.
        backing: passthrough backing file state, see ``file.Backing``.
        nocaps: the real file is known to have no ``security.capability``
            xattr (see ``getxattr``).
    """

    __slots__ = (
        "nodeid",
        "parent",
        "path",
        "layer",
        "dlayers",
        "fmt",
        "ino",
        "nlookup",
        "unlinked",
        "backing",
        "open_fds",
        "links",
        "nocaps",
    )

    def __init__(
        self,
        nodeid: int,
        parent: Node | None,
        path: bytes,
        layer: int,
        dlayers: tuple[int, ...],
        fmt: int,
        ino: int,
    ) -> None:
        self.nodeid = nodeid
        self.parent = parent
        self.path = path
        self.layer = layer
        self.dlayers = dlayers
        self.fmt = fmt
        self.ino = ino
        self.nlookup = 0
        self.unlinked = False
        self.backing: object | None = None
        self.open_fds: list[int] = []
        #: other union paths of the same upper file (hard links made through the mount).
        self.links: list[bytes] = []
        self.nocaps = False

    @property
    def is_dir(self) -> bool:
        """True for a directory."""
        return self.fmt == stat.S_IFDIR

    def __repr__(self) -> str:
        return f"Node({self.nodeid}, {self.path!r}, layer={self.layer}, dlayers={self.dlayers})"


class NodeTable:
    """Nodes by id and by union path. All methods need the caller to hold ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.by_id: dict[int, Node] = {}
        self.by_path: dict[bytes, Node] = {}
        self._next = 2

    def add(
        self,
        parent: Node | None,
        path: bytes,
        layer: int,
        dlayers: tuple[int, ...],
        fmt: int,
        ino: int,
        nodeid: int = 0,
    ) -> Node:
        """Create a node for ``path`` and index it (``nodeid`` 0 picks the next id)."""
        if not nodeid:
            nodeid = self._next
            self._next += 1
        node = Node(nodeid, parent, path, layer, dlayers, fmt, ino)
        self.by_id[nodeid] = node
        self.by_path[path] = node
        return node

    def get(self, nodeid: int) -> Node:
        """Return the node with ``nodeid``.

        Raises:
            OSError: ESTALE for an id the kernel should not know.
        """
        node = self.by_id.get(nodeid)
        if node is None:
            raise OSError(errno.ESTALE, "unknown node id")
        return node

    def forget(self, nodeid: int, nlookup: int) -> None:
        """Drop ``nlookup`` kernel references; forget the node at zero."""
        node = self.by_id.get(nodeid)
        if node is None or nodeid == 1:
            return
        node.nlookup -= nlookup
        if node.nlookup <= 0 and not node.open_fds:
            del self.by_id[nodeid]
            for path in (node.path, *node.links):
                if self.by_path.get(path) is node:
                    del self.by_path[path]

    def detach(self, node: Node, path: bytes | None = None) -> None:
        """Name ``path`` of ``node`` went away (unlink, rmdir, replaced by a rename).

        A hard-linked node lives on under its other names.
        """
        path = node.path if path is None else path
        if self.by_path.get(path) is node:
            del self.by_path[path]
        if path in node.links:
            node.links.remove(path)
        elif path == node.path:
            if node.links:
                node.path = node.links.pop()
            else:
                node.unlinked = True

    def alias(self, node: Node, path: bytes) -> None:
        """Index ``node`` under one more name (a hard link)."""
        node.links.append(path)
        self.by_path[path] = node

    def move(self, node: Node, new_parent: Node, new_path: bytes, old: bytes | None = None) -> None:
        """Re-index ``node`` (its name ``old``) and, for a directory, everything below it."""
        old = node.path if old is None else old
        if self.by_path.get(old) is node:
            del self.by_path[old]
        self.by_path[new_path] = node
        if old in node.links:
            node.links[node.links.index(old)] = new_path
            return
        node.path = new_path
        node.parent = new_parent
        if node.is_dir:
            prefix = old + b"/"
            moved = [(p, n) for p, n in self.by_path.items() if p.startswith(prefix)]
            for p, _ in moved:
                del self.by_path[p]
            for p, n in moved:
                q = new_path + p[len(old) :]
                self.by_path[q] = n
                if p == n.path:
                    n.path = q
                elif p in n.links:
                    n.links[n.links.index(p)] = q
