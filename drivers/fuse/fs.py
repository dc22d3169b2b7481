"""The union filesystem's state: its layers, node table and open handles.

Layering of this package: ``protocol`` and ``session`` know the FUSE wire
format and nothing of layers; ``namei``, ``copy_up``, ``dir``, ``readdir``,
``inode`` and ``file`` implement overlayfs semantics on real directories
and know nothing of FUSE; ``ops`` translates requests into calls on them.

Imports go one way, bottom up: ``nodes`` and ``upper`` import nothing of
the package; ``fs`` only ``nodes``; ``namei`` and ``copy_up`` only those
(``fs`` for annotations); then ``inode``, ``readdir``, ``dir``, ``file``;
``ops`` on top. The overlay format itself is ``layerfs._overlayfmt``.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import logging
import os
import stat
import threading
from collections.abc import Sequence

from layerfs._overlayfmt.lower import dir_layers
from layerfs._overlayfmt.marks import opaque_xattr
from layerfs._sys.tree import remove_tree

from .nodes import NodeTable

__all__ = ["Config", "UnionFS"]

log = logging.getLogger("layerfs.fuse")

#: overlay keeps its temporary files in this subdirectory of the workdir.
WORK_SUBDIR = b"work"


@dataclasses.dataclass(frozen=True)
class Config:
    """What to union and how.

    Attributes:
        lowers: lower directories, nearest (topmost) first.
        upper: the upper directory, or None for a read-only union.
        work: overlay's workdir (same filesystem as ``upper``).
        xattr_prefix: ``"trusted."`` or ``"user."`` (overlay's ``userxattr``).
        passthrough: ``"auto"`` or ``"off"``.
        threads: request threads.
    """

    lowers: Sequence[str]
    upper: str | None = None
    work: str | None = None
    xattr_prefix: str = "trusted."
    passthrough: str = "auto"
    threads: int = 2

    def __post_init__(self) -> None:
        if not self.lowers and not self.upper:
            raise ValueError("at least one lowerdir (or an upperdir) is needed")
        if self.upper and not self.work:
            raise ValueError("upperdir needs a workdir")
        if self.xattr_prefix not in ("trusted.", "user."):
            raise ValueError(f"xattr prefix {self.xattr_prefix!r}: use 'trusted.' or 'user.'")
        if self.passthrough not in ("auto", "off"):
            raise ValueError(f"passthrough={self.passthrough!r}: use 'auto' or 'off'")
        if self.threads < 1:
            raise ValueError(f"threads={self.threads}: need at least 1")


class UnionFS:
    """Layers, nodes and handles of one mounted union.

    Args:
        config: the layers and options.

    Raises:
        OSError: a layer directory cannot be opened.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        roots: list[bytes] = []
        # realpath: layers are often given as symlinks (the store's short links),
        # and every lookup lstat()s root + path.
        if config.upper:
            roots.append(os.fsencode(os.path.realpath(config.upper)))
        roots += [os.fsencode(os.path.realpath(p)) for p in config.lowers]
        for r in roots:
            st = os.stat(r)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "layer is not a directory", r)
        self.roots = roots
        #: an O_PATH fd per root: real lookups are ``fstatat(root_fd, "." + path)``,
        #: so the kernel does not walk each root's own path again (after a cache
        #: drop, that walk reads every layer's ancestors from disk).
        self.root_fds = [os.open(r, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC) for r in roots]
        self.has_upper = config.upper is not None
        self.first_lower = 1 if self.has_upper else 0
        self.work = (
            os.path.join(os.fsencode(os.path.abspath(config.work)), WORK_SUBDIR)
            if config.work
            else b""
        )
        self.opaque_xattr = opaque_xattr(config.xattr_prefix).encode()
        self.own_xattr_prefix = config.xattr_prefix.encode() + b"overlay."
        self.nodes = NodeTable()
        self.lock = self.nodes.lock
        self.handles: dict[int, object] = {}
        self._fh = itertools.count(1)
        self._tmp = itertools.count(1)
        self.handles_lock = threading.Lock()
        #: set by the session: registers passthrough backing files, or None.
        self.backing_open: object | None = None
        self.backing_close: object | None = None
        root_st = os.stat(roots[0])
        root_layers = dir_layers(roots, b"", range(len(roots)), self.opaque_xattr)
        self.nodes.add(None, b"", 0, root_layers, stat.S_IFDIR, root_st.st_ino, 1)
        self.nodes.by_id[1].nlookup = 1
        #: the upper directory is on a read-only filesystem: writes fail with EROFS.
        self.upper_readonly = bool(self.has_upper and os.statvfs(roots[0]).f_flag & os.ST_RDONLY)
        if self.has_upper and not self.upper_readonly:
            self._prepare_work()

    def _prepare_work(self) -> None:
        """Create ``work/work`` and empty it: leftovers are unfinished copy-ups."""
        os.makedirs(self.work, mode=0o700, exist_ok=True)
        os.chmod(self.work, 0o700)
        for entry in os.scandir(self.work):
            log.info("removing leftover %s from the workdir", os.fsdecode(entry.path))
            remove_tree(entry.path)

    def new_fh(self, handle: object) -> int:
        """Store an open handle and return its number."""
        fh = next(self._fh)
        self.handles[fh] = handle
        return fh

    def temp_name(self) -> bytes:
        """A fresh path in the workdir for a temporary object."""
        return self.work + b"/#%x.%x" % (os.getpid(), next(self._tmp))

    def upper_path(self, path: bytes) -> bytes:
        """The upper-layer path of union ``path``.

        Raises:
            OSError: EROFS when the union has no upper layer.
        """
        if not self.has_upper or self.upper_readonly:
            raise OSError(errno.EROFS, "read-only union")
        return self.roots[0] + path
