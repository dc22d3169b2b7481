"""Union inodes: the node table, attributes, setattr, xattrs and statfs.

A node is one name in the union tree as the kernel knows it (one FUSE node
id). It remembers which layer holds its topmost real object and, for a
directory, every layer whose directory is merged into it (topmost first,
stopping at an opaque one). Nodes are found by node id (kernel requests)
and by union path (to give the same node id back for the same name, which
keeps ``st_ino`` and the kernel's inode stable across copy-up).

``st_ino`` is the inode number of the real object where the node was first
seen; a copy-up keeps it, so it does not change while the node lives.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .fs import UnionFS

__all__ = ["Node", "NodeTable", "getattr_node", "setattr_node", "statfs"]


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
    from .copy_up import copy_up

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
    from .copy_up import copy_up

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
    from .copy_up import copy_up

    real_name = _real_name(fs, name)
    os.getxattr(fs.roots[node.layer] + node.path, real_name, follow_symlinks=False)
    copy_up(fs, node)
    os.removexattr(fs.roots[node.layer] + node.path, real_name, follow_symlinks=False)


def statfs(fs: UnionFS) -> os.statvfs_result:
    """Return ``statvfs`` of the upper layer (the top lower one when read-only)."""
    return os.statvfs(fs.roots[0])
