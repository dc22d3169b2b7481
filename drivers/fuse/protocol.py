"""The FUSE kernel protocol: opcodes, flags and wire structs (protocol 7.40+).

Some facts about ``/dev/fuse`` that the rest of the package relies on:

- Every ``read(2)`` on the device returns exactly one request: a 40-byte
  ``fuse_in_header`` (length, opcode, unique id, node id, caller uid/gid/pid)
  followed by an opcode-specific body. The read buffer must hold the largest
  possible request (``max_write`` plus a page), or the read fails with EINVAL.
- Every request except FORGET, BATCH_FORGET and INTERRUPT gets exactly one
  reply, written in a single ``write(2)``: a 16-byte ``fuse_out_header``
  (length, negative errno or 0, unique id) and the reply body. Writing a
  reply to a request the caller abandoned fails with ENOENT; that is normal.
- Node id 1 is the root. Every LOOKUP, CREATE, MKNOD, MKDIR, SYMLINK, LINK
  reply and every READDIRPLUS entry with a non-zero node id adds one to that
  node's lookup count; FORGET subtracts. A node may be dropped at zero.
- A LOOKUP reply with node id 0 and a non-zero entry timeout is a cached
  negative entry.
- Init flags above bit 31 travel in ``flags2`` and need FUSE_INIT_EXT.
  FUSE_PASSTHROUGH is bit 37 (Linux 6.9); ``max_stack_depth`` in the INIT
  reply must be at least 1 for it, and must exceed the stacking depth of the
  backing files' filesystem.
- An OPEN reply with FOPEN_PASSTHROUGH and a ``backing_id`` makes the kernel
  serve read, write, splice and mmap of that file from the backing file
  without further requests. All passthrough opens of one inode must share
  the same backing file (else EBUSY), and cached (non passthrough,
  non direct-io) opens cannot coexist with them (ETXTBSY).
"""

from __future__ import annotations

import struct

KERNEL_VERSION = 7
KERNEL_MINOR = 40

ROOT_ID = 1

# -- opcodes -----------------------------------------------------------------
LOOKUP = 1
FORGET = 2
GETATTR = 3
SETATTR = 4
READLINK = 5
SYMLINK = 6
MKNOD = 8
MKDIR = 9
UNLINK = 10
RMDIR = 11
RENAME = 12
LINK = 13
OPEN = 14
READ = 15
WRITE = 16
STATFS = 17
RELEASE = 18
FSYNC = 20
SETXATTR = 21
GETXATTR = 22
LISTXATTR = 23
REMOVEXATTR = 24
FLUSH = 25
INIT = 26
OPENDIR = 27
READDIR = 28
RELEASEDIR = 29
FSYNCDIR = 30
GETLK = 31
SETLK = 32
SETLKW = 33
ACCESS = 34
CREATE = 35
INTERRUPT = 36
BMAP = 37
DESTROY = 38
IOCTL = 39
POLL = 40
BATCH_FORGET = 42
FALLOCATE = 43
READDIRPLUS = 44
RENAME2 = 45
LSEEK = 46
COPY_FILE_RANGE = 47
SYNCFS = 50
TMPFILE = 51
STATX = 52

#: Opcode number -> name, for statistics and logs.
OPCODE_NAMES = {
    v: k
    for k, v in dict(globals()).items()
    if k.isupper() and isinstance(v, int) and k not in ("KERNEL_VERSION", "KERNEL_MINOR", "ROOT_ID")
}

# -- INIT flags (flags | flags2 << 32) ----------------------------------------------
ASYNC_READ = 1 << 0
ATOMIC_O_TRUNC = 1 << 3
BIG_WRITES = 1 << 5
DONT_MASK = 1 << 6
AUTO_INVAL_DATA = 1 << 12
DO_READDIRPLUS = 1 << 13
READDIRPLUS_AUTO = 1 << 14
ASYNC_DIO = 1 << 15
WRITEBACK_CACHE = 1 << 16
PARALLEL_DIROPS = 1 << 18
HANDLE_KILLPRIV = 1 << 19
MAX_PAGES = 1 << 22
CACHE_SYMLINKS = 1 << 23
EXPLICIT_INVAL_DATA = 1 << 25
HANDLE_KILLPRIV_V2 = 1 << 28
INIT_EXT = 1 << 30
PASSTHROUGH = 1 << 37
NO_EXPORT_SUPPORT = 1 << 38

#: Names of the init flags we report in ``status()``.
FLAG_NAMES = {
    ASYNC_READ: "async_read",
    ATOMIC_O_TRUNC: "atomic_o_trunc",
    BIG_WRITES: "big_writes",
    AUTO_INVAL_DATA: "auto_inval_data",
    DO_READDIRPLUS: "readdirplus",
    READDIRPLUS_AUTO: "readdirplus_auto",
    ASYNC_DIO: "async_dio",
    WRITEBACK_CACHE: "writeback_cache",
    PARALLEL_DIROPS: "parallel_dirops",
    HANDLE_KILLPRIV: "handle_killpriv",
    MAX_PAGES: "max_pages",
    CACHE_SYMLINKS: "cache_symlinks",
    EXPLICIT_INVAL_DATA: "explicit_inval_data",
    HANDLE_KILLPRIV_V2: "handle_killpriv_v2",
    INIT_EXT: "init_ext",
    PASSTHROUGH: "passthrough",
}

# -- open reply flags --------------------------------------------------------------
FOPEN_DIRECT_IO = 1 << 0
FOPEN_KEEP_CACHE = 1 << 1
FOPEN_CACHE_DIR = 1 << 3
FOPEN_PARALLEL_DIRECT_WRITES = 1 << 6
FOPEN_PASSTHROUGH = 1 << 7

# -- setattr valid bits ---------------------------------------------------------------
FATTR_MODE = 1 << 0
FATTR_UID = 1 << 1
FATTR_GID = 1 << 2
FATTR_SIZE = 1 << 3
FATTR_ATIME = 1 << 4
FATTR_MTIME = 1 << 5
FATTR_FH = 1 << 6
FATTR_ATIME_NOW = 1 << 7
FATTR_MTIME_NOW = 1 << 8
FATTR_CTIME = 1 << 10
FATTR_KILL_SUIDGID = 1 << 11

GETATTR_FH = 1 << 0
RELEASE_FLUSH = 1 << 0

# -- wire structs --------------------------------------------------------------------
IN_HEADER = struct.Struct("=IIQQIIIHH")  # len opcode unique nodeid uid gid pid extlen pad
OUT_HEADER = struct.Struct("=IiQ")  # len error unique
INIT_IN = struct.Struct("=IIIII")  # major minor max_readahead flags flags2 (+ unused)
INIT_OUT = struct.Struct("=IIIIHHIIHHII24x")
# ino size blocks atime mtime ctime atimens mtimens ctimens mode nlink uid gid rdev blksize flags
ATTR = struct.Struct("=QQQQQQIIIIIIIIII")
ENTRY_OUT_HEAD = struct.Struct("=QQQQII")  # nodeid generation entry_valid attr_valid nsecs
ENTRY_OUT = struct.Struct("=QQQQII" + ATTR.format[1:])
ATTR_OUT = struct.Struct("=QII" + ATTR.format[1:])  # attr_valid nsec dummy attr
GETATTR_IN = struct.Struct("=IIQ")  # flags dummy fh
# valid pad fh size lock_owner atime mtime ctime atimens mtimens ctimens mode unused uid gid unused
SETATTR_IN = struct.Struct("=IIQQQQQQIIIIIIII")
MKNOD_IN = struct.Struct("=IIII")  # mode rdev umask pad
MKDIR_IN = struct.Struct("=II")  # mode umask
RENAME_IN = struct.Struct("=Q")  # newdir
RENAME2_IN = struct.Struct("=QII")  # newdir flags pad
LINK_IN = struct.Struct("=Q")  # oldnodeid
OPEN_IN = struct.Struct("=II")  # flags open_flags
OPEN_OUT = struct.Struct("=QIi")  # fh open_flags backing_id
CREATE_IN = struct.Struct("=IIII")  # flags mode umask open_flags
READ_IN = struct.Struct("=QQIIQII")  # fh offset size read_flags lock_owner flags pad
WRITE_IN = struct.Struct("=QQIIQII")  # fh offset size write_flags lock_owner flags pad
WRITE_OUT = struct.Struct("=II")
STATFS_OUT = struct.Struct("=QQQQQIIII24x")
RELEASE_IN = struct.Struct("=QIIQ")  # fh flags release_flags lock_owner
FLUSH_IN = struct.Struct("=QIIQ")
FSYNC_IN = struct.Struct("=QII")
SETXATTR_IN = struct.Struct("=II")  # size flags
GETXATTR_IN = struct.Struct("=II")  # size pad
GETXATTR_OUT = struct.Struct("=II")
ACCESS_IN = struct.Struct("=II")
FORGET_IN = struct.Struct("=Q")
BATCH_FORGET_IN = struct.Struct("=II")
FORGET_ONE = struct.Struct("=QQ")
FALLOCATE_IN = struct.Struct("=QQQII")  # fh offset length mode pad
LSEEK_IN = struct.Struct("=QQII")  # fh offset whence pad
LSEEK_OUT = struct.Struct("=Q")
DIRENT = struct.Struct("=QQII")  # ino off namelen type
INTERRUPT_IN = struct.Struct("=Q")


def split_names(body: bytes | memoryview, count: int) -> list[bytes]:
    """Split ``count`` NUL-terminated names off the front of ``body``."""
    raw = bytes(body)
    parts = raw.split(b"\0", count)
    return parts[:count]


def dirent_size(namelen: int) -> int:
    """Bytes one ``fuse_dirent`` with a name of ``namelen`` takes, 8-aligned."""
    return (DIRENT.size + namelen + 7) & ~7


def direntplus_size(namelen: int) -> int:
    """Bytes one ``fuse_direntplus`` takes, 8-aligned."""
    return (ENTRY_OUT.size + DIRENT.size + namelen + 7) & ~7
