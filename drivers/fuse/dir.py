"""Namespace changes: create, mkdir, mknod, symlink, link, unlink, rmdir, rename.

These follow overlayfs with ``redirect_dir=off``:

- a new object replacing a whiteout is built in the workdir and renamed over
  the whiteout (a directory with RENAME_EXCHANGE, since a rename cannot put a
  directory over a device node); a directory made there is opaque, so the
  deleted lower directory's entries stay hidden;
- removing a name that a lower layer also has leaves a whiteout: for an
  upper object by exchanging it with a fresh whiteout, for a lower one by
  creating the whiteout in the (copied-up) parent;
- renaming a directory that has lower parts fails with EXDEV (user space
  such as ``mv`` then copies); a pure upper directory moved into a merged
  parent becomes opaque; a source name a lower layer also has is replaced
  by a whiteout in the same rename (RENAME_WHITEOUT).

Every function is called with ``fs.lock`` held and returns the node of the
new name where there is one.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING

from layerfs._overlayfmt.marks import is_opaque
from layerfs._sys import fsops

from . import upper
from .copy_up import copy_up, fs_remove
from .inode import Node
from .namei import check_name, is_whiteout, lower_positive, resolve
from .readdir import merged_names

if TYPE_CHECKING:
    from .fs import UnionFS

__all__ = ["lookup", "create_object", "unlink", "rmdir", "rename"]


#: The server's own ids: the owner of every object it makes.
_EUID = os.geteuid()
_EGID = os.getegid()


def child_path(parent: Node, name: bytes) -> bytes:
    """The union path of ``name`` in ``parent``."""
    return parent.path + b"/" + name


def find(fs: UnionFS, parent: Node, name: bytes) -> Node | None:
    """The node of ``name`` in ``parent`` (None when absent), for removals and renames.

    Unlike ``lookup`` a known node is not stat'ed: the caller needs no
    attributes, and the real syscall that follows fails if the object is gone.

    Raises:
        OSError: as ``lookup``.
    """
    if parent.is_dir:
        node = fs.nodes.by_path.get(parent.path + b"/" + name)
        if node is not None:
            return node
    found = lookup(fs, parent, name)
    return None if found is None else found[0]


def lookup(fs: UnionFS, parent: Node, name: bytes) -> tuple[Node, os.stat_result] | None:
    """Find ``name`` in directory ``parent``; None when absent or whited out.

    The node's lookup count is not changed here.

    Raises:
        OSError: ENOTDIR when ``parent`` is not a directory; real lookup errors.
    """
    if not parent.is_dir:
        raise OSError(errno.ENOTDIR, "not a directory")
    path = child_path(parent, name)
    node = fs.nodes.by_path.get(path)
    if node is not None:
        try:
            return node, os.lstat(b"." + node.path, dir_fd=fs.root_fds[node.layer])
        except FileNotFoundError:
            fs.nodes.detach(node, path)
    found = resolve(fs, parent.dlayers, path)
    if found is None:
        return None
    layer, dlayers, st = found
    ino = st.st_ino
    node = fs.nodes.add(parent, path, layer, dlayers, stat.S_IFMT(st.st_mode), ino)
    return node, st


def create_object(
    fs: UnionFS,
    parent: Node,
    name: bytes,
    uid: int,
    gid: int,
    make: Callable[[bytes], None],
    is_dir: bool = False,
    mode: int | None = None,
    own: bool = True,
    link_of: Node | None = None,
) -> tuple[Node, os.stat_result]:
    """Create ``name`` in ``parent`` with ``make(real_path)``, owned by the caller.

    Args:
        fs: the union.
        parent: the directory node.
        name: the new name.
        uid: owner (the caller's fsuid).
        gid: group (the caller's fsgid, or the parent's when it is set-group-id).
        make: creates the object at the given real path (mkdir, mknod, ...).
        is_dir: the object is a directory (opaque when it replaces a whiteout).
        mode: the requested mode, to restore set-id bits after the chown.
        own: give the object to ``uid:gid`` (False for a hard link).
        link_of: for a hard link, the node it links to: the new name becomes
            another name of that node (the kernel expects the same node id).

    Raises:
        OSError: EEXIST when the name exists; EROFS; the real errno.
    """
    check_name(name)
    path = child_path(parent, name)
    # A pure upper directory has no lower layer to look through: try to make
    # the object right away; only when the name is taken does an lstat tell
    # a whiteout (made over, below) from a real object (EEXIST).
    pure_upper = fs.has_upper and not fs.upper_readonly and parent.dlayers == (0,)
    if pure_upper:
        real = fs.roots[0] + path
        over_whiteout = False
    else:
        if lookup(fs, parent, name) is not None:
            raise OSError(errno.EEXIST, "exists")
        copy_up(fs, parent)
        real = fs.upper_path(path)
        try:
            over_whiteout = is_whiteout(os.lstat(real))
        except FileNotFoundError:
            over_whiteout = False
    pst = os.lstat(b"." + parent.path, dir_fd=fs.root_fds[0])
    sgid = pst.st_mode & stat.S_ISGID
    if sgid:
        gid = pst.st_gid
        if is_dir and mode is not None:
            mode |= stat.S_ISGID
    if not over_whiteout:
        try:
            make(real)
        except FileExistsError:
            if not pure_upper or not is_whiteout(os.lstat(real)):
                raise
            over_whiteout = True
        else:
            try:
                # The real object already belongs to the server's fsuid and to
                # the group the kernel chose (the parent's when set-group-id,
                # as ``gid`` is then): no chown when that is what was asked.
                if own and (uid != _EUID or gid != (pst.st_gid if sgid else _EGID)):
                    upper.do_set_owner(real, uid, gid, mode)
            except OSError:
                _undo(real)
                raise
    if over_whiteout:
        tmp = fs.temp_name()
        try:
            make(tmp)
            if own:
                upper.do_set_owner(tmp, uid, gid, mode)
            if is_dir:
                upper.do_set_opaque(tmp, fs.opaque_xattr)
                upper.do_rename(tmp, real, fsops.RENAME_EXCHANGE)
                upper.do_unlink(tmp)
            else:
                upper.do_rename(tmp, real)
        except BaseException:
            fs_remove(tmp)
            raise
    old = fs.nodes.by_path.get(path)
    if old is not None:
        fs.nodes.detach(old, path)
    st = os.lstat(real)
    if link_of is not None:
        fs.nodes.alias(link_of, path)
        return link_of, st
    fmt = stat.S_IFMT(st.st_mode)
    node = fs.nodes.add(parent, path, 0, (0,) if fmt == stat.S_IFDIR else (), fmt, st.st_ino)
    node.nocaps = True  # a new object has no file capabilities
    return node, st


def _undo(real: bytes) -> None:
    fs_remove(real)


def unlink(fs: UnionFS, parent: Node, name: bytes) -> None:
    """Remove non-directory ``name`` from ``parent``.

    Raises:
        OSError: ENOENT, EISDIR, EROFS, the real errno.
    """
    node = find(fs, parent, name)
    if node is None:
        raise OSError(errno.ENOENT, "no such file")
    if node.is_dir:
        raise OSError(errno.EISDIR, "is a directory")
    _remove(fs, parent, node, child_path(parent, name))


def rmdir(fs: UnionFS, parent: Node, name: bytes) -> None:
    """Remove directory ``name`` from ``parent`` (empty in the union view).

    Raises:
        OSError: ENOENT, ENOTDIR, ENOTEMPTY, EROFS, the real errno.
    """
    node = find(fs, parent, name)
    if node is None:
        raise OSError(errno.ENOENT, "no such directory")
    if not node.is_dir:
        raise OSError(errno.ENOTDIR, "not a directory")
    if merged_names(fs, node):
        raise OSError(errno.ENOTEMPTY, "directory not empty")
    _remove(fs, parent, node, child_path(parent, name))


def _remove(fs: UnionFS, parent: Node, node: Node, path: bytes) -> None:
    real = fs.upper_path(path)
    if node.layer == 0:
        if lower_positive(fs, parent.dlayers, path):
            tmp = fs.temp_name()
            upper.do_whiteout(tmp)
            try:
                upper.do_rename(tmp, real, fsops.RENAME_EXCHANGE)
            except BaseException:
                fs_remove(tmp)
                raise
            # tmp now holds the removed object.
            if node.is_dir:
                upper.clear_whiteouts(tmp)
                upper.do_rmdir(tmp)
            else:
                upper.do_unlink(tmp)
        elif node.is_dir:
            upper.clear_whiteouts(real)
            upper.do_rmdir(real)
        else:
            upper.do_unlink(real)
    else:
        copy_up(fs, parent)
        upper.do_whiteout(real)
    fs.nodes.detach(node, path)


def _pure_upper_dir(node: Node) -> bool:
    return node.dlayers == (0,)


def _merged(node: Node) -> bool:
    return len(node.dlayers) > 1


def rename(
    fs: UnionFS, parent: Node, name: bytes, newparent: Node, newname: bytes, flags: int
) -> None:
    """Rename ``parent/name`` to ``newparent/newname`` (renameat2 ``flags``).

    Raises:
        OSError: ENOENT, EEXIST (RENAME_NOREPLACE), EXDEV (a directory with
            lower parts), EISDIR/ENOTDIR/ENOTEMPTY, EINVAL, EROFS.
    """
    check_name(newname)
    if flags & ~(fsops.RENAME_NOREPLACE | fsops.RENAME_EXCHANGE):
        raise OSError(errno.EINVAL, "unsupported rename flags")
    exchange = bool(flags & fsops.RENAME_EXCHANGE)
    src = find(fs, parent, name)
    if src is None:
        raise OSError(errno.ENOENT, "no such file")
    dst = find(fs, newparent, newname)
    if flags & fsops.RENAME_NOREPLACE and dst is not None:
        raise OSError(errno.EEXIST, "exists")
    if exchange and dst is None:
        raise OSError(errno.ENOENT, "no such file")
    if dst is src:
        return
    if not fs.has_upper or fs.upper_readonly:
        raise OSError(errno.EROFS, "read-only union")
    if src.is_dir and not _pure_upper_dir(src):
        raise OSError(errno.EXDEV, "directory has lower layers (redirect_dir=off)")
    if exchange and dst is not None and dst.is_dir and not _pure_upper_dir(dst):
        raise OSError(errno.EXDEV, "directory has lower layers (redirect_dir=off)")
    if dst is not None and not exchange:
        if dst.is_dir and not src.is_dir:
            raise OSError(errno.EISDIR, "is a directory")
        if src.is_dir and not dst.is_dir:
            raise OSError(errno.ENOTDIR, "not a directory")
        if dst.is_dir and merged_names(fs, dst):
            raise OSError(errno.ENOTEMPTY, "directory not empty")
    copy_up(fs, src)
    copy_up(fs, newparent)
    old_path = child_path(parent, name)
    old_real = fs.roots[0] + old_path
    new_path = child_path(newparent, newname)
    new_real = fs.roots[0] + new_path
    if exchange:
        assert dst is not None
        copy_up(fs, dst)
        if src.is_dir and _merged(newparent):
            _ensure_opaque(fs, old_real)
        if dst.is_dir and _merged(parent):
            _ensure_opaque(fs, new_real)
        upper.do_rename(old_real, new_real, fsops.RENAME_EXCHANGE)
        fs.nodes.move(src, newparent, b"\0tmp", old_path)
        fs.nodes.move(dst, parent, old_path, new_path)
        fs.nodes.move(src, newparent, new_path, b"\0tmp")
        return
    if src.is_dir and _merged(newparent):
        _ensure_opaque(fs, old_real)
    leave_whiteout = lower_positive(fs, parent.dlayers, old_path)
    try:
        dst_st: os.stat_result | None = os.lstat(new_real)
    except FileNotFoundError:
        dst_st = None
    if dst_st is not None and stat.S_ISDIR(dst_st.st_mode):
        upper.clear_whiteouts(new_real)
    if src.is_dir and dst_st is not None and is_whiteout(dst_st):
        # A directory cannot be renamed over a device node: swap them, and
        # the whiteout lands where the source was, which is right when a lower
        # layer shows through there.
        upper.do_rename(old_real, new_real, fsops.RENAME_EXCHANGE)
        if not leave_whiteout:
            upper.do_unlink(old_real)
    elif leave_whiteout:
        upper.do_rename(old_real, new_real, fsops.RENAME_WHITEOUT)
    else:
        upper.do_rename(old_real, new_real)
    if dst is not None:
        fs.nodes.detach(dst, new_path)
    fs.nodes.move(src, newparent, new_path, old_path)


def _ensure_opaque(fs: UnionFS, real: bytes) -> None:
    if not is_opaque(real, fs.opaque_xattr):
        upper.do_set_opaque(real, fs.opaque_xattr)
