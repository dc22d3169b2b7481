"""Copy-up: bring a lower object into the upper layer before it changes.

Order matters:
- parents first, so the rename into place always has a directory to land in;
- the object is built complete in the workdir (data, then owner, then mode,
  because chown drops set-id bits, then xattrs, then times, since every
  earlier step moves ctime/mtime) and fsynced, then renamed into the upper
  directory in one step. A crash at any point leaves at most a temporary
  file in the workdir, which the next mount removes: a half-copied file is
  never visible in the upper.
- data is cloned with FICLONE when the filesystems allow it (instant,
  shared extents), else copied with copy_file_range (in-kernel), else
  sendfile.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import TYPE_CHECKING

from layerfs._sys import fuse_dev

from . import upper
from .inode import Node

if TYPE_CHECKING:
    from .fs import UnionFS

__all__ = ["copy_up", "copy_xattrs"]

_CHUNK = 1 << 30


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
    copy_xattrs(fs, src, tmp)
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_file(src: bytes, tmp: bytes, st: os.stat_result, data: bool) -> None:
    fd_out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if data and st.st_size:
            fd_in = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
            try:
                copy_data(fd_in, fd_out, st.st_size)
            finally:
                os.close(fd_in)
            os.fsync(fd_out)
    finally:
        os.close(fd_out)


def copy_data(fd_in: int, fd_out: int, size: int) -> None:
    """Copy ``size`` bytes: FICLONE, else copy_file_range, else sendfile."""
    try:
        fuse_dev.ficlone(fd_out, fd_in)
        return
    except OSError as exc:
        if exc.errno not in (
            errno.EOPNOTSUPP,
            errno.EINVAL,
            errno.EXDEV,
            errno.ENOTTY,
            errno.EBADF,
        ):
            raise
    done = 0
    use_cfr = True
    while done < size:
        n = 0
        if use_cfr:
            try:
                n = os.copy_file_range(fd_in, fd_out, min(_CHUNK, size - done), done, done)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                use_cfr = False
                continue
        else:
            os.lseek(fd_out, done, os.SEEK_SET)
            n = os.sendfile(fd_out, fd_in, done, min(_CHUNK, size - done))
        if n == 0:
            break  # the source shrank under us
        done += n


def copy_xattrs(fs: UnionFS, src: bytes, dst: bytes) -> None:
    """Copy every xattr of ``src`` to ``dst`` except overlay's own ones.

    Raises:
        OSError: the upper filesystem refused one (the copy-up fails whole).
    """
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.ENOTSUP):
            return
        raise
    own = fs.own_xattr_prefix.decode()
    escaped = own + "overlay."
    for name in names:
        if name.startswith(own) and not name.startswith(escaped):
            continue
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno == errno.ENODATA:
                continue
            raise
        os.setxattr(dst, name, value, follow_symlinks=False)
