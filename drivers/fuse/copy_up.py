"""Copy-up: bring a lower object into the upper layer before it changes.

Order matters:
- parents first, so the rename into place always has a directory to land in;
- the object is built complete in the workdir (data, then owner, then mode,
  because chown drops set-id bits, then xattrs, then times, since every
  earlier step moves ctime/mtime) and its data made durable, then renamed
  into the upper directory in one step. A crash at any point leaves at most
  a temporary file in the workdir, which the next mount removes: a
  half-copied file is never visible in the upper.
- data is cloned with FICLONE when the filesystems allow it (instant,
  shared extents), else copied with copy_file_range (in-kernel): one call
  of ``_sys.clone.copy_data``, the project's one copy routine.
- copied data is fsynced before the rename, as kernel overlayfs does. A
  clone needs no fsync: it writes no data, only extent metadata, which the
  filesystem's journal (XFS, btrfs: the ones with FICLONE) commits in order,
  before the later rename. This is what makes a copy-up on a reflink
  filesystem cost the same for 1 MiB and 1 GiB.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import TYPE_CHECKING

from layerfs._overlayfmt.marks import is_private_xattr
from layerfs._sys.clone import copy_data
from layerfs._sys.xattrs import copy_xattrs

from . import upper

if TYPE_CHECKING:
    from .fs import UnionFS
    from .nodes import Node

__all__ = ["copy_up"]


def copy_up(fs: UnionFS, node: Node, data: bool = True) -> None:
    """Make sure ``node`` lives in the upper layer. Caller holds ``fs.lock``.

    Args:
        fs: the union.
        node: the node to copy up (its parents are copied up first).
        data: copy file contents (False when the caller truncates to 0).

    Raises:
        OSError: EROFS without an upper layer, ENOSPC, EIO...: nothing is left
            in the upper layer when it fails.
    """
    if node.layer == 0 and fs.has_upper:
        return
    if not fs.has_upper or fs.upper_readonly:
        raise OSError(errno.EROFS, "read-only union")
    if node.unlinked:
        raise OSError(errno.ENOENT, "copy-up of a deleted file")
    if node.parent is not None:
        copy_up(fs, node.parent)
    src = fs.roots[node.layer] + node.path
    dst = fs.roots[0] + node.path
    tmp = fs.temp_name()
    st = os.lstat(src)
    try:
        _build(fs, src, tmp, st, data)
        upper.do_rename(tmp, dst)
    except BaseException:
        fs_remove(tmp)
        raise
    node.layer = 0
    if node.is_dir:
        node.dlayers = (0, *node.dlayers)


def fs_remove(path: bytes) -> None:
    """Remove a temporary object, whatever it is; ignore errors."""
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.lstat(path).st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)


def _build(fs: UnionFS, src: bytes, tmp: bytes, st: os.stat_result, data: bool) -> None:
    mode = st.st_mode
    fmt = stat.S_IFMT(mode)
    if fmt == stat.S_IFREG:
        _copy_file(src, tmp, st, data)
    elif fmt == stat.S_IFDIR:
        os.mkdir(tmp, 0o700)
    elif fmt == stat.S_IFLNK:
        os.symlink(os.readlink(src), tmp)
    else:
        os.mknod(tmp, mode, st.st_rdev)
    try:
        os.lchown(tmp, st.st_uid, st.st_gid)
    except PermissionError:
        # Without privileges (fusermount3 mounts) files copied up become the
        # user's own, as with overlay in a user namespace.
        if os.geteuid() == 0:
            raise
    if fmt != stat.S_IFLNK:
        os.chmod(tmp, stat.S_IMODE(mode))
    prefix = fs.config.xattr_prefix
    # Overlay's own marks stay behind; a user's escaped ones are data. Any
    # error fails the copy-up whole (nothing is renamed into the upper).
    copy_xattrs(src, tmp, keep=lambda name: not is_private_xattr(name, prefix))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: bytes, tmp: bytes, st: os.stat_result, data: bool) -> None:
    fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if data and st.st_size:
            fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            try:
                cloned = copy_data(fd_in, fd_out, st.st_size)
            finally:
                os.close(fd_in)
            if not cloned:
                os.fsync(fd_out)
    finally:
        os.close(fd_out)
