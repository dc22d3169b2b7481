"""FUSE requests to union operations: parse request bodies, pack replies.

Each handler takes ``(nodeid, body, uid, gid)`` and returns the reply body
(``bytes``, or a list of buffers), or None for requests that get no reply
(FORGET, INTERRUPT). Errors are raised as ``OSError`` and the session
turns them into an error reply; a hot path may instead return the errno
as an ``int`` (no exception to build and catch).

Namespace operations and opens hold ``fs.lock`` (the node table and
copy-up need one consistent view); data operations on open handles do not.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Callable

from layerfs._sys import fsops

from . import dir as union_dir
from . import file as union_file
from . import inode
from . import protocol as p
from .fs import UnionFS
from .inode import Node
from .readdir import DirHandle, snapshot

__all__ = ["Ops", "Handler"]

log = logging.getLogger("layerfs.fuse")

Handler = Callable[[int, memoryview, int, int], "bytes | list[bytes] | int | None"]

#: Seconds the kernel may cache names, negative names and attributes. The
#: server is the only writer of its layers, so long caches are safe.
ENTRY_TIMEOUT = 86400
ATTR_TIMEOUT = 86400

_ATTR_PACK = p.ATTR.pack
_ENTRY_PACK = p.ENTRY_OUT.pack
_ATTR_OUT_PACK = p.ATTR_OUT.pack
_NEGATIVE = p.ENTRY_OUT.pack(0, 0, ENTRY_TIMEOUT, 0, 0, 0, *([0] * 16))
_ZERO_ENTRY = bytes(p.ENTRY_OUT.size)
_S_IFDIR = stat.S_IFDIR
_S_IFMT = 0o170000
_BILLION = 1_000_000_000


def encode_dev(rdev: int) -> int:
    """glibc ``dev_t`` to the kernel's 32-bit ``new_encode_dev`` form."""
    major, minor = os.major(rdev), os.minor(rdev)
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def decode_dev(dev: int) -> int:
    """The kernel's ``new_encode_dev`` form to a glibc ``dev_t``."""
    return os.makedev((dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00))


# The two packers below run for every LOOKUP, GETATTR, SETATTR and CREATE:
# the ``fuse_attr`` fields are computed inline and passed to one precompiled
# Struct.pack, with no intermediate tuple (about 3x cheaper than building it).


def pack_entry(node: Node, st: os.stat_result) -> bytes:
    """``fuse_entry_out`` of ``node`` with real stat ``st``; counts one kernel lookup."""
    mode = st.st_mode
    nlink = st.st_nlink
    if (mode & _S_IFMT) == _S_IFDIR:
        attr_valid = ATTR_TIMEOUT
        if len(node.dlayers) > 1:
            nlink = 1  # as overlay: counting subdirectories of a merge is not worth it
    else:
        # A hard-linked file's nlink changes through its other names, which are
        # other nodes: never cache its attributes.
        attr_valid = 0 if nlink > 1 else ATTR_TIMEOUT
    a, an = divmod(st.st_atime_ns, _BILLION)
    m, mn = divmod(st.st_mtime_ns, _BILLION)
    c, cn = divmod(st.st_ctime_ns, _BILLION)
    rdev = st.st_rdev
    if rdev:
        rdev = encode_dev(rdev)
    node.nlookup += 1
    return _ENTRY_PACK(
        node.nodeid, 0, ENTRY_TIMEOUT, attr_valid, 0, 0,
        node.ino, st.st_size, st.st_blocks, a, m, c, an, mn, cn,
        mode, nlink, st.st_uid, st.st_gid, rdev, st.st_blksize, 0,
    )  # fmt: skip


def pack_attr(node: Node, st: os.stat_result) -> bytes:
    """``fuse_attr_out`` of ``node`` with real stat ``st`` (as ``pack_entry``)."""
    mode = st.st_mode
    nlink = st.st_nlink
    if (mode & _S_IFMT) == _S_IFDIR:
        attr_valid = ATTR_TIMEOUT
        if len(node.dlayers) > 1:
            nlink = 1
    else:
        attr_valid = 0 if nlink > 1 else ATTR_TIMEOUT
    a, an = divmod(st.st_atime_ns, _BILLION)
    m, mn = divmod(st.st_mtime_ns, _BILLION)
    c, cn = divmod(st.st_ctime_ns, _BILLION)
    rdev = st.st_rdev
    if rdev:
        rdev = encode_dev(rdev)
    return _ATTR_OUT_PACK(
        attr_valid, 0, 0,
        node.ino, st.st_size, st.st_blocks, a, m, c, an, mn, cn,
        mode, nlink, st.st_uid, st.st_gid, rdev, st.st_blksize, 0,
    )  # fmt: skip


def _name(body: memoryview) -> bytes:
    raw = bytes(body)
    end = raw.find(b"\0")
    return raw if end < 0 else raw[:end]


class Ops:
    """The request handlers of one union filesystem.

    Args:
        fs: the union.

    Attributes:
        passthrough: set by the session after INIT when the kernel agreed.
        writeback: set by the session after INIT when the writeback cache is on.
    """

    def __init__(self, fs: UnionFS) -> None:
        self.fs = fs
        self.passthrough = False
        self.writeback = False

    def table(self) -> dict[int, Handler]:
        """Map opcodes to handlers."""
        return {
            p.LOOKUP: self.lookup,
            p.FORGET: self.forget,
            p.BATCH_FORGET: self.batch_forget,
            p.GETATTR: self.getattr,
            p.SETATTR: self.setattr,
            p.READLINK: self.readlink,
            p.SYMLINK: self.symlink,
            p.MKNOD: self.mknod,
            p.MKDIR: self.mkdir,
            p.UNLINK: self.unlink,
            p.RMDIR: self.rmdir,
            p.RENAME: self.rename,
            p.RENAME2: self.rename2,
            p.LINK: self.link,
            p.OPEN: self.open,
            p.CREATE: self.create,
            p.READ: self.read,
            p.WRITE: self.write,
            p.STATFS: self.statfs,
            p.RELEASE: self.release,
            p.FLUSH: self.flush,
            p.FSYNC: self.fsync,
            p.SETXATTR: self.setxattr,
            p.GETXATTR: self.getxattr,
            p.LISTXATTR: self.listxattr,
            p.REMOVEXATTR: self.removexattr,
            p.OPENDIR: self.opendir,
            p.READDIR: self.readdir,
            p.READDIRPLUS: self.readdirplus,
            p.RELEASEDIR: self.releasedir,
            p.FSYNCDIR: self.fsyncdir,
            p.ACCESS: self.access,
            p.FALLOCATE: self.fallocate,
            p.LSEEK: self.lseek,
            p.INTERRUPT: self.interrupt,
            p.SYNCFS: self.syncfs,
            p.DESTROY: self.destroy,
        }

    # -- helpers -------------------------------------------------------------------

    def _file(self, fh: int) -> union_file.FileHandle:
        handle = self.fs.handles.get(fh)
        if not isinstance(handle, union_file.FileHandle):
            raise OSError(errno.EBADF, "bad file handle")
        return handle

    # -- names ---------------------------------------------------------------------

    def lookup(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """LOOKUP: a name in a directory; a cached negative entry when absent."""
        fs = self.fs
        name = _name(body)
        with fs.lock:
            found = union_dir.lookup(fs, fs.nodes.get(nodeid), name)
            if found is None:
                return _NEGATIVE
            return pack_entry(*found)

    def forget(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        """FORGET: drop kernel references (no reply)."""
        (n,) = p.FORGET_IN.unpack_from(body)
        with self.fs.lock:
            self.fs.nodes.forget(nodeid, n)

    def batch_forget(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        """BATCH_FORGET: several FORGETs (no reply)."""
        (count, _) = p.BATCH_FORGET_IN.unpack_from(body)
        off = p.BATCH_FORGET_IN.size
        with self.fs.lock:
            for _ in range(count):
                nid, n = p.FORGET_ONE.unpack_from(body, off)
                off += p.FORGET_ONE.size
                self.fs.nodes.forget(nid, n)

    def getattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """GETATTR: attributes, through the open handle when the kernel names one."""
        flags, _, fh = p.GETATTR_IN.unpack_from(body)
        node = self.fs.nodes.get(nodeid)
        fd = -1
        if flags & p.GETATTR_FH:
            handle = self.fs.handles.get(fh)
            if isinstance(handle, union_file.FileHandle):
                fd = handle.fd
        return pack_attr(node, inode.getattr_node(self.fs, node, fd))

    def setattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """SETATTR: chmod, chown, truncate, utimes (copies up first)."""
        (
            valid, _, fh, size, _, atime, mtime, _, atimens, mtimens, _, mode, _, new_uid,
            new_gid, _,
        ) = p.SETATTR_IN.unpack_from(body)  # fmt: skip
        fs = self.fs
        fd = -1
        if valid & p.FATTR_FH:
            handle = fs.handles.get(fh)
            if isinstance(handle, union_file.FileHandle):
                fd = handle.fd
        a_ns = m_ns = None
        if valid & p.FATTR_ATIME_NOW:
            a_ns = inode.now_ns()
        elif valid & p.FATTR_ATIME:
            a_ns = atime * _BILLION + atimens
        if valid & p.FATTR_MTIME_NOW:
            m_ns = inode.now_ns()
        elif valid & p.FATTR_MTIME:
            m_ns = mtime * _BILLION + mtimens
        with fs.lock:
            node = fs.nodes.get(nodeid)
            inode.setattr_node(
                fs,
                node,
                fd=fd,
                mode=mode if valid & p.FATTR_MODE else None,
                uid=new_uid if valid & p.FATTR_UID else None,
                gid=new_gid if valid & p.FATTR_GID else None,
                size=size if valid & p.FATTR_SIZE else None,
                atime_ns=a_ns,
                mtime_ns=m_ns,
            )
            return pack_attr(node, inode.getattr_node(fs, node, fd))

    def readlink(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """READLINK."""
        node = self.fs.nodes.get(nodeid)
        return os.readlink(self.fs.roots[node.layer] + node.path)

    def _create(
        self,
        nodeid: int,
        name: bytes,
        uid: int,
        gid: int,
        make: Callable[[bytes], None],
        is_dir: bool = False,
        mode: int | None = None,
        own: bool = True,
        link_of: Node | None = None,
    ) -> bytes:
        fs = self.fs
        with fs.lock:
            parent = fs.nodes.get(nodeid)
            node, st = union_dir.create_object(
                fs, parent, name, uid, gid, make, is_dir, mode, own, link_of
            )
            return pack_entry(node, st)

    def mknod(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """MKNOD: device nodes, fifos, sockets, plain files."""
        mode, rdev, _, _ = p.MKNOD_IN.unpack_from(body)
        name = _name(body[p.MKNOD_IN.size :])
        dev = decode_dev(rdev)
        return self._create(
            nodeid, name, uid, gid, lambda path: os.mknod(path, mode, dev), mode=mode
        )

    def mkdir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """MKDIR."""
        mode, _ = p.MKDIR_IN.unpack_from(body)
        name = _name(body[p.MKDIR_IN.size :])
        perm = mode & 0o1777
        return self._create(nodeid, name, uid, gid, lambda path: os.mkdir(path, perm), True, perm)

    def symlink(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """SYMLINK: body is ``name\\0target\\0``."""
        name, target = p.split_names(body, 2)
        return self._create(nodeid, name, uid, gid, lambda path: os.symlink(target, path))

    def link(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """LINK: a new name for an existing file (copied up first)."""
        (old,) = p.LINK_IN.unpack_from(body)
        name = _name(body[p.LINK_IN.size :])
        fs = self.fs
        with fs.lock:
            src = fs.nodes.get(old)
            if src.is_dir:
                raise OSError(errno.EPERM, "hard link to a directory")
            if src.unlinked:
                raise OSError(errno.ENOENT, "source deleted")
            from .copy_up import copy_up

            copy_up(fs, src)
            real = fs.roots[0] + src.path
            return self._create(
                nodeid, name, uid, gid, lambda path: os.link(real, path), own=False, link_of=src
            )

    def unlink(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """UNLINK."""
        fs = self.fs
        with fs.lock:
            union_dir.unlink(fs, fs.nodes.get(nodeid), _name(body))
        return b""

    def rmdir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """RMDIR."""
        fs = self.fs
        with fs.lock:
            union_dir.rmdir(fs, fs.nodes.get(nodeid), _name(body))
        return b""

    def _rename(self, nodeid: int, newdir: int, names: memoryview, flags: int) -> bytes:
        old, new = p.split_names(names, 2)
        fs = self.fs
        with fs.lock:
            union_dir.rename(fs, fs.nodes.get(nodeid), old, fs.nodes.get(newdir), new, flags)
        return b""

    def rename(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """RENAME."""
        (newdir,) = p.RENAME_IN.unpack_from(body)
        return self._rename(nodeid, newdir, body[p.RENAME_IN.size :], 0)

    def rename2(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """RENAME2: rename with RENAME_NOREPLACE / RENAME_EXCHANGE."""
        newdir, flags, _ = p.RENAME2_IN.unpack_from(body)
        return self._rename(nodeid, newdir, body[p.RENAME2_IN.size :], flags)

    # -- files -----------------------------------------------------------------------

    def _open_reply(self, handle: union_file.FileHandle) -> bytes:
        fh = self.fs.new_fh(handle)
        if handle.backing_id:
            return p.OPEN_OUT.pack(fh, p.FOPEN_PASSTHROUGH, handle.backing_id)
        return p.OPEN_OUT.pack(fh, p.FOPEN_KEEP_CACHE, 0)

    def open(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """OPEN: copy up for writing, then passthrough or a plain handle."""
        flags, _ = p.OPEN_IN.unpack_from(body)
        fs = self.fs
        with fs.lock:
            node = fs.nodes.get(nodeid)
            handle = union_file.open_node(fs, node, flags, self.passthrough, self.writeback)
            return self._open_reply(handle)

    def create(self, nodeid: int, body: memoryview, uid: int, gid: int) -> list[bytes]:
        """CREATE: a new regular file, opened."""
        flags, mode, _, _ = p.CREATE_IN.unpack_from(body)
        name = _name(body[p.CREATE_IN.size :])
        real_flags = union_file.open_flags_for_real(flags, self.writeback)
        if self.passthrough:  # the new file becomes the backing file of all its opens
            real_flags = (real_flags & ~(os.O_ACCMODE | os.O_APPEND)) | os.O_RDWR
        real_flags |= os.O_CREAT | os.O_EXCL
        real_flags &= ~os.O_TRUNC
        perm = mode & 0o7777
        fds: list[int] = []

        def make(path: bytes) -> None:
            fds.append(os.open(path, real_flags, perm))

        fs = self.fs
        with fs.lock:
            parent = fs.nodes.get(nodeid)
            try:
                node, st = union_dir.create_object(
                    fs, parent, name, uid, gid, make, mode=stat.S_IFREG | perm
                )
            except BaseException:
                for fd in fds:
                    os.close(fd)
                raise
            handle = union_file.adopt_fd(fs, node, fds[0], self.passthrough)
            return [pack_entry(node, st), self._open_reply(handle)]

    def read(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """READ (only without passthrough)."""
        fh, offset, size, _, _, _, _ = p.READ_IN.unpack_from(body)
        return os.pread(self._file(fh).fd, size, offset)

    def write(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """WRITE (only without passthrough)."""
        fh, offset, size, _, _, _, _ = p.WRITE_IN.unpack_from(body)
        start = p.WRITE_IN.size
        n = os.pwrite(self._file(fh).fd, body[start : start + size], offset)
        return p.WRITE_OUT.pack(n, 0)

    def release(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """RELEASE: the last close of an open."""
        fh = p.RELEASE_IN.unpack_from(body)[0]
        handle = self.fs.handles.pop(fh, None)
        if isinstance(handle, union_file.FileHandle):
            union_file.release(self.fs, handle)
        return b""

    def flush(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """FLUSH: nothing to do (no locks, data is in the real file already).

        ENOSYS tells the kernel never to send FLUSH again, saving a round
        trip per close().
        """
        raise OSError(errno.ENOSYS, "flush is a no-op")

    def fsync(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """FSYNC / FDATASYNC of the real file."""
        fh, flags, _ = p.FSYNC_IN.unpack_from(body)
        fd = self._file(fh).fd
        if flags & 1:
            os.fdatasync(fd)
        else:
            os.fsync(fd)
        return b""

    def fallocate(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """FALLOCATE on the real file."""
        fh, offset, length, mode, _ = p.FALLOCATE_IN.unpack_from(body)
        fsops.fallocate(self._file(fh).fd, mode, offset, length)
        return b""

    def lseek(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """LSEEK for SEEK_DATA / SEEK_HOLE."""
        fh, offset, whence, _ = p.LSEEK_IN.unpack_from(body)
        return p.LSEEK_OUT.pack(os.lseek(self._file(fh).fd, offset, whence))

    # -- xattrs ----------------------------------------------------------------------

    def setxattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """SETXATTR."""
        size, flags = p.SETXATTR_IN.unpack_from(body)
        rest = bytes(body[p.SETXATTR_IN.size :])
        end = rest.index(b"\0")
        name, value = rest[:end], rest[end + 1 : end + 1 + size]
        with self.fs.lock:
            inode.setxattr(self.fs, self.fs.nodes.get(nodeid), name, value, flags)
        return b""

    def getxattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes | int:
        """GETXATTR: size 0 asks for the length only."""
        size, _ = p.GETXATTR_IN.unpack_from(body)
        name = _name(body[p.GETXATTR_IN.size :])
        node = self.fs.nodes.get(nodeid)
        if node.nocaps and name == inode.CAPS_XATTR:
            return errno.ENODATA  # the kernel's probe before every write and chown
        return _sized(inode.getxattr(self.fs, node, name), size)

    def listxattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """LISTXATTR: NUL-separated names, overlay's own hidden."""
        size, _ = p.GETXATTR_IN.unpack_from(body)
        names = inode.listxattr(self.fs, self.fs.nodes.get(nodeid))
        return _sized(b"".join(n + b"\0" for n in names), size)

    def removexattr(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """REMOVEXATTR."""
        with self.fs.lock:
            inode.removexattr(self.fs, self.fs.nodes.get(nodeid), _name(body))
        return b""

    # -- directories --------------------------------------------------------------------

    def opendir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """OPENDIR: snapshot the merged listing."""
        fs = self.fs
        with fs.lock:
            handle = snapshot(fs, fs.nodes.get(nodeid))
        return p.OPEN_OUT.pack(fs.new_fh(handle), 0, 0)

    def _dir(self, fh: int) -> DirHandle:
        handle = self.fs.handles.get(fh)
        if not isinstance(handle, DirHandle):
            raise OSError(errno.EBADF, "bad directory handle")
        return handle

    def readdir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """READDIR: entries from the snapshot, offsets are indexes + 1."""
        fh, offset, size, _, _, _, _ = p.READ_IN.unpack_from(body)
        entries = self._dir(fh).entries
        out = bytearray()
        pack = p.DIRENT.pack
        for i in range(offset, len(entries)):
            name, dtype, ino = entries[i]
            rec = p.dirent_size(len(name))
            if len(out) + rec > size:
                break
            out += pack(ino, i + 1, len(name), dtype)
            out += name
            out += bytes(rec - p.DIRENT.size - len(name))
        return bytes(out)

    def readdirplus(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """READDIRPLUS: entries with their lookups, saving one LOOKUP per name."""
        fh, offset, size, _, _, _, _ = p.READ_IN.unpack_from(body)
        dh = self._dir(fh)
        entries = dh.entries
        fs = self.fs
        out = bytearray()
        pack = p.DIRENT.pack
        with fs.lock:
            for i in range(offset, len(entries)):
                name, dtype, ino = entries[i]
                rec = p.direntplus_size(len(name))
                if len(out) + rec > size:
                    break
                entry = _ZERO_ENTRY
                if i >= 2:
                    try:
                        found = union_dir.lookup(fs, dh.node, name)
                    except OSError:
                        found = None
                    if found is not None:
                        entry = pack_entry(*found)
                out += entry
                out += pack(ino, i + 1, len(name), dtype)
                out += name
                out += bytes(rec - p.ENTRY_OUT.size - p.DIRENT.size - len(name))
        return bytes(out)

    def releasedir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """RELEASEDIR."""
        self.fs.handles.pop(p.RELEASE_IN.unpack_from(body)[0], None)
        return b""

    def fsyncdir(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """FSYNCDIR: sync the upper directory when there is one."""
        fs = self.fs
        node = fs.nodes.get(nodeid)
        if fs.has_upper and node.layer == 0:
            fd = os.open(fs.roots[0] + node.path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return b""

    # -- misc ----------------------------------------------------------------------------

    def statfs(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """STATFS of the upper layer."""
        s = inode.statfs(self.fs)
        return p.STATFS_OUT.pack(
            s.f_blocks, s.f_bfree, s.f_bavail, s.f_files, s.f_ffree,
            s.f_bsize, s.f_namemax, s.f_frsize, 0,
        )  # fmt: skip

    def access(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """ACCESS: the kernel checks permissions itself (default_permissions)."""
        return b""

    def interrupt(self, nodeid: int, body: memoryview, uid: int, gid: int) -> None:
        """INTERRUPT: no request here blocks for long, so it is ignored (no reply)."""
        return None

    def syncfs(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """SYNCFS."""
        os.sync()
        return b""

    def destroy(self, nodeid: int, body: memoryview, uid: int, gid: int) -> bytes:
        """DESTROY: the filesystem is going away."""
        return b""


def _sized(value: bytes, size: int) -> bytes:
    if size == 0:
        return p.GETXATTR_OUT.pack(len(value), 0)
    if len(value) > size:
        raise OSError(errno.ERANGE, "buffer too small")
    return value
