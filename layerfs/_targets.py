"""Where ``apply`` writes: a full tree, or an overlay-format diff directory.

Both targets offer the same small set of primitive operations on the
*merged view* (what a mount of the snapshot would show); ``_apply`` holds
the one implementation of OCI layer semantics on top of them, so the two
cannot drift apart.

- ``TreeTarget``: the snapshot's whole tree (``copy``, a mounted
  ``devmapper`` device). The merged view is the directory itself.
- ``DiffTarget``: an overlay upper directory with the parents' upper
  directories underneath (``overlay``, ``fuse``). A removed name becomes a
  0/0 character device when a lower layer still shows it; a directory
  made where a lower one was hidden becomes opaque (``overlay.opaque``
  xattr), so the lower one's entries stay hidden. Directories are copied
  up with their metadata before anything is written inside them, as
  overlay itself would.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from ._fstree import copy_node
from ._overlayfmt.lower import lookup, lstat_or_none, merged_names
from ._overlayfmt.marks import is_image_xattr, is_whiteout, make_whiteout, set_opaque
from ._scoped import Parts
from ._sys import openat2
from ._sys.tree import remove_tree
from ._sys.xattrs import UNSUPPORTED, copy_xattrs

_PRIVILEGED = os.geteuid() == 0
#: Mode of a directory a layer implies without an entry of its own.
IMPLIED_DIR_MODE = 0o755


def _mkdir(path: str) -> None:
    os.mkdir(path, 0o700)
    os.chmod(path, IMPLIED_DIR_MODE)  # explicit: the umask must not decide


class Target:
    """The primitives ``_apply`` needs, on the merged view of one snapshot.

    Paths are tuples of components relative to the root, already resolved
    (no symlinks in any directory part).
    """

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)

    def real(self, parts: Sequence[str]) -> str:
        """The on-disk path of ``parts`` in the directory being written."""
        return os.path.join(self.root, *parts)

    def lstat(self, parts: Parts) -> os.stat_result | None:
        """The entry the merged view shows at ``parts``, not following links."""
        raise NotImplementedError

    def readlink(self, parts: Parts) -> str:
        """The target of the symlink the merged view shows at ``parts``."""
        raise NotImplementedError

    def listdir(self, parts: Parts) -> list[str]:
        """The names the merged view shows in the directory ``parts``."""
        raise NotImplementedError

    def resolve_dir(self, parts: Sequence[str]) -> Parts | None:
        """A fast resolution of an existing directory, or None to walk instead."""
        return None

    def make_dir(self, parts: Parts) -> str:
        """Make an empty directory where the merged view shows nothing."""
        raise NotImplementedError

    def keep_dir(self, parts: Parts) -> str:
        """Make the existing directory ``parts`` writable here; return its path."""
        raise NotImplementedError

    def remove(self, parts: Parts) -> None:
        """Make the merged view show nothing at ``parts`` (and below)."""
        raise NotImplementedError

    def hide_lower(self, parts: Parts) -> None:  # noqa: B027 - a no-op for full trees
        """Hide whatever lower layers hold below the directory ``parts``."""

    def new_path(self, parts: Parts) -> str:
        """The path to create a new entry at; the merged view shows nothing there."""
        raise NotImplementedError

    def link_source(self, parts: Parts) -> str:
        """The path of the existing non-directory ``parts``, to hard-link to."""
        raise NotImplementedError

    def close(self) -> None:  # noqa: B027 - optional
        """Release file descriptors."""


class TreeTarget(Target):
    """A snapshot's whole tree; symlinks resolved with ``openat2`` when the kernel has it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._root_fd = os.open(self.root, openat2.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1

    def lstat(self, parts: Parts) -> os.stat_result | None:
        return lstat_or_none(self.real(parts))

    def readlink(self, parts: Parts) -> str:
        return os.readlink(self.real(parts))

    def listdir(self, parts: Parts) -> list[str]:
        return os.listdir(self.real(parts))

    def resolve_dir(self, parts: Sequence[str]) -> Parts | None:
        if not parts:
            return ()
        try:
            fd = openat2.open_in_root(
                self._root_fd, "/".join(parts), openat2.O_PATH | os.O_DIRECTORY
            )
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                return None  # the walk makes what is missing or says what is wrong
            raise
        if fd is None:
            return None
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        rel = os.path.relpath(where, self.root)
        if rel == "." or not where.startswith(self.root + os.sep):
            return ()
        return tuple(rel.split(os.sep))

    def make_dir(self, parts: Parts) -> str:
        path = self.real(parts)
        _mkdir(path)
        return path

    def keep_dir(self, parts: Parts) -> str:
        return self.real(parts)

    def remove(self, parts: Parts) -> None:
        remove_tree(self.real(parts))

    def new_path(self, parts: Parts) -> str:
        return self.real(parts)

    def link_source(self, parts: Parts) -> str:
        return self.real(parts)


class DiffTarget(Target):
    """An overlay upper directory over ``lowers`` (the parents' upper dirs, nearest first)."""

    def __init__(self, root: Path, lowers: Sequence[Path], opaque_xattr: str) -> None:
        super().__init__(root)
        self.lowers = [Path(p) for p in lowers]
        self.layers = [Path(self.root), *self.lowers]
        self.opaque_xattr = opaque_xattr

    def _merged(self, parts: Parts) -> str | None:
        return lookup(self.layers, parts, self.opaque_xattr)

    def _lower_dir(self, parts: Parts) -> str | None:
        """The lower layers' directory at ``parts``, if they show one."""
        path = lookup(self.lowers, parts, self.opaque_xattr)
        if path is not None and stat.S_ISDIR(os.lstat(path).st_mode):
            return path
        return None

    def lstat(self, parts: Parts) -> os.stat_result | None:
        path = self._merged(parts)
        return None if path is None else os.lstat(path)

    def readlink(self, parts: Parts) -> str:
        path = self._merged(parts)
        assert path is not None
        return os.readlink(path)

    def listdir(self, parts: Parts) -> list[str]:
        return sorted(merged_names(self.layers, parts, self.opaque_xattr))

    def _clear_upper(self, parts: Parts) -> None:
        path = self.real(parts)
        if lstat_or_none(path) is not None:
            remove_tree(path)

    def make_dir(self, parts: Parts) -> str:
        self.keep_dir(parts[:-1])
        self._clear_upper(parts)  # a whiteout of what was here
        path = self.real(parts)
        _mkdir(path)
        if self._lower_dir(parts) is not None:
            # A new directory where a lower one was removed: without the
            # opaque mark, the lower one's entries would show through.
            set_opaque(path, self.opaque_xattr)
        return path

    def keep_dir(self, parts: Parts) -> str:
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            upper = self.real(prefix)
            st = lstat_or_none(upper)
            if st is not None and stat.S_ISDIR(st.st_mode):
                continue
            lower = self._merged(prefix)
            assert lower is not None, prefix
            lst = os.lstat(lower)
            os.mkdir(upper, 0o700)
            _copy_dir_metadata(lower, upper, lst)
        return self.real(parts)

    def remove(self, parts: Parts) -> None:
        self.keep_dir(parts[:-1])
        self._clear_upper(parts)
        if self._merged(parts) is not None:
            make_whiteout(self.real(parts))

    def hide_lower(self, parts: Parts) -> None:
        path = self.keep_dir(parts)
        if not parts or self._lower_dir(parts) is None:
            # Kernel overlayfs ignores the opaque mark on the upper root
            # (and ``_overlayfmt.lower`` does too): there the caller whites out the
            # lower entries one by one instead.
            return
        set_opaque(path, self.opaque_xattr)
        for entry in os.scandir(path):
            if is_whiteout(entry.stat(follow_symlinks=False)):
                os.unlink(entry.path)  # nothing left below to white out

    def new_path(self, parts: Parts) -> str:
        self.keep_dir(parts[:-1])
        self._clear_upper(parts)
        return self.real(parts)

    def link_source(self, parts: Parts) -> str:
        upper = self.real(parts)
        st = lstat_or_none(upper)
        if st is not None and not is_whiteout(st):
            return upper
        lower = self._merged(parts)
        assert lower is not None
        # The link target lives in a lower layer: copy it up first, as
        # overlay would. Its other visible names are copied up as links to
        # the copy, or the new name would join only part of the link group.
        lst = os.lstat(lower)
        others = self._other_names(lower, lst) if lst.st_nlink > 1 else []
        self.keep_dir(parts[:-1])
        self._clear_upper(parts)
        copy_node(lower, upper, lst)
        for other in others:
            self.keep_dir(other[:-1])
            self._clear_upper(other)
            os.link(upper, self.real(other), follow_symlinks=False)
        return upper

    def _other_names(self, path: str, st: os.stat_result) -> list[Parts]:
        """The other names the merged view shows for the lower file ``path``'s inode.

        Walks the one lower layer that holds ``path``: costly, but only
        needed when a layer links to a file that has several names below.
        """
        layer = next(str(p) for p in self.lowers if path.startswith(str(p) + os.sep))
        found = []
        for top, dirs, files in os.walk(layer):
            for name in files + dirs:
                other = os.path.join(top, name)
                if other == path:
                    continue
                ost = os.lstat(other)
                if (ost.st_dev, ost.st_ino) != (st.st_dev, st.st_ino):
                    continue
                rel = tuple(os.path.relpath(other, layer).split(os.sep))
                if self._merged(rel) == other:
                    found.append(rel)
        return found


def _copy_dir_metadata(src: str, dst: str, st: os.stat_result) -> None:
    """Copy a directory's owner, xattrs, mode and times, as overlay's copy-up does."""
    if _PRIVILEGED:
        os.lchown(dst, st.st_uid, st.st_gid)
    copy_xattrs(src, dst, keep=is_image_xattr, tolerate=UNSUPPORTED)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
