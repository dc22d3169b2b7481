"""Open files: open, create, read, write, release, fallocate, fsync.

With passthrough the real file is registered with the kernel as the
*backing file* of the open (``FUSE_DEV_IOC_BACKING_OPEN``) and the open
reply carries FOPEN_PASSTHROUGH: reads, writes and mmap then go from the
kernel to the real file and never reach this process. The kernel wants one
backing file per FUSE inode, so a node keeps one ``Backing`` shared by all
its opens, opened read-write when the file is in the upper layer (so later
writers can share it) and read-only in a lower one.

A lower file open read-only through passthrough pins the node to that
lower backing file; a later open for writing copies the file up but cannot
switch the node to the upper copy while the read-only open lives: it fails
with ETXTBSY, like writing to a running executable.

Without passthrough, data goes through READ and WRITE requests served with
pread/pwrite, and the kernel's writeback cache batches the writes.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from .copy_up import copy_up
from .inode import Node

if TYPE_CHECKING:
    from .fs import UnionFS

__all__ = ["Backing", "FileHandle", "open_node", "release"]

_ACCMODE = os.O_ACCMODE
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_TRUNC
_STRIP = os.O_CREAT | os.O_EXCL | os.O_NOCTTY


class Backing:
    """A passthrough backing file of one node.

    Attributes:
        fd: the real file, kept open while any passthrough open uses it.
        backing_id: the kernel's id for it.
        layer: the layer it lives in.
        users: passthrough opens using it.
        writable: ``fd`` is open read-write.
    """

    __slots__ = ("fd", "backing_id", "layer", "users", "writable")

    def __init__(self, fd: int, backing_id: int, layer: int, writable: bool) -> None:
        self.fd = fd
        self.backing_id = backing_id
        self.layer = layer
        self.users = 0
        self.writable = writable


class FileHandle:
    """One open of a file.

    Attributes:
        node: the node opened.
        fd: the real file descriptor (reads/writes without passthrough, fsync...);
            with passthrough it is the node's backing file, shared by its opens.
        backing_id: the passthrough backing id, or 0.
    """

    __slots__ = ("node", "fd", "backing_id")

    def __init__(self, node: Node, fd: int, backing_id: int) -> None:
        self.node = node
        self.fd = fd
        self.backing_id = backing_id


def open_flags_for_real(flags: int, writeback: bool) -> int:
    """Flags to open the real file with, from the caller's open flags."""
    # O_DIRECT is the kernel's business: our own preads use unaligned buffers.
    flags = (flags & ~(_STRIP | os.O_DIRECT)) | os.O_CLOEXEC
    if writeback:
        # The writeback cache reads pages of write-only files and handles
        # O_APPEND itself (offsets in WRITE requests are final).
        if flags & _ACCMODE == os.O_WRONLY:
            flags = (flags & ~_ACCMODE) | os.O_RDWR
        flags &= ~os.O_APPEND
    return flags


def open_node(
    fs: UnionFS, node: Node, flags: int, passthrough: bool, writeback: bool
) -> FileHandle:
    """Open ``node`` with the caller's ``flags``; caller holds ``fs.lock``.

    Copies the node up first when ``flags`` ask for writing or truncation.
    With passthrough, every open of the node shares the node's backing file
    (one real open per file, not per open).

    Raises:
        OSError: EROFS, ETXTBSY (see module doc), the real open's errno.
    """
    wants_write = bool(flags & _WRITE_FLAGS)
    if wants_write:
        copy_up(fs, node, data=not (flags & os.O_TRUNC))
    real = fs.roots[node.layer] + node.path
    if passthrough:
        if flags & os.O_TRUNC:
            os.truncate(real, 0)
        backing = _backing(fs, node, real, wants_write, -1)
        node.open_fds.append(backing.fd)
        return FileHandle(node, backing.fd, backing.backing_id)
    fd = os.open(real, open_flags_for_real(flags, writeback))
    node.open_fds.append(fd)
    return FileHandle(node, fd, 0)


def adopt_fd(fs: UnionFS, node: Node, fd: int, passthrough: bool) -> FileHandle:
    """Make a handle of an fd just created by CREATE (read-write with passthrough).

    Caller holds ``fs.lock``; the fd belongs to the handle (or the backing) now.
    """
    if passthrough:
        try:
            backing = _backing(fs, node, b"", True, fd)
        except BaseException:
            os.close(fd)
            raise
        node.open_fds.append(backing.fd)
        return FileHandle(node, backing.fd, backing.backing_id)
    node.open_fds.append(fd)
    return FileHandle(node, fd, 0)


def _backing(fs: UnionFS, node: Node, real: bytes, wants_write: bool, fd: int) -> Backing:
    backing = node.backing
    if isinstance(backing, Backing):
        if backing.layer != node.layer or (wants_write and not backing.writable):
            raise OSError(errno.ETXTBSY, "file open read-only elsewhere; copied up meanwhile")
        backing.users += 1
        if fd >= 0:
            os.close(fd)
        return backing
    writable = True
    if fd < 0:
        fd, writable = _open_backing(fs, node, real, wants_write)
    assert fs.backing_open is not None
    try:
        backing_id = fs.backing_open(fd)  # type: ignore[operator]
    except BaseException:
        os.close(fd)
        raise
    backing = Backing(fd, backing_id, node.layer, writable)
    backing.users = 1
    node.backing = backing
    return backing


def _open_backing(fs: UnionFS, node: Node, real: bytes, wants_write: bool) -> tuple[int, bool]:
    # Read-write whenever the file is in the upper layer, so that later
    # writers can share the backing file of earlier readers.
    if node.layer == 0 and fs.has_upper:
        try:
            return os.open(real, os.O_RDWR | os.O_CLOEXEC), True
        except OSError as exc:
            if wants_write or exc.errno not in (errno.EROFS, errno.EACCES, errno.ETXTBSY):
                raise
    return os.open(real, os.O_RDONLY | os.O_CLOEXEC), False


def release(fs: UnionFS, handle: FileHandle) -> None:
    """Close an open; drop the node's backing file when its last user goes."""
    node = handle.node
    close_fd = not handle.backing_id
    with fs.lock:
        try:
            node.open_fds.remove(handle.fd)
        except ValueError:
            pass
        backing = node.backing
        if handle.backing_id and isinstance(backing, Backing):
            backing.users -= 1
            if backing.users <= 0:
                node.backing = None
                close_fd = True
                if fs.backing_close is not None:
                    try:
                        fs.backing_close(backing.backing_id)  # type: ignore[operator]
                    except OSError:
                        pass
        if node.nlookup <= 0 and not node.open_fds:
            fs.nodes.forget(node.nodeid, 0)
    if close_fd:
        os.close(handle.fd)
