"""One FUSE connection: mount, INIT handshake, and the request loop.

The session owns the ``/dev/fuse`` fds. ``mount`` opens the device and
mounts it; ``start`` answers INIT (choosing the init flags from what the
kernel offers), then runs request threads, each blocked in ``readv`` on
its own fd cloned with FUSE_DEV_IOC_CLONE so the kernel spreads requests
over them. When the filesystem is unmounted (and its last open file
closed) every read fails with ENODEV and the threads end.

Request buffers are allocated once per thread; handlers get a memoryview
into it, valid until they return.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from layerfs._sys import fuse_dev
from layerfs._sys import mount as sysmount

from . import protocol as p

if TYPE_CHECKING:
    from .profile import Profiler

__all__ = ["Session", "InitInfo"]

log = logging.getLogger("layerfs.fuse")

PAGE = 4096
MAX_PAGES = 256

#: Flags we ask for whenever the kernel offers them.
WANTED = (
    p.ASYNC_READ
    | p.ATOMIC_O_TRUNC
    | p.BIG_WRITES
    | p.DO_READDIRPLUS
    | p.READDIRPLUS_AUTO
    | p.PARALLEL_DIROPS
    | p.MAX_PAGES
    | p.CACHE_SYMLINKS
    | p.ASYNC_DIO
    | p.INIT_EXT
)


class InitInfo:
    """What INIT negotiated.

    Attributes:
        major: protocol major version of the kernel.
        minor: protocol minor version of the kernel.
        offered: init flags the kernel offered.
        granted: init flags we enabled.
        passthrough: FUSE passthrough is on.
        writeback: the writeback cache is on.
    """

    def __init__(self, major: int, minor: int, offered: int, granted: int) -> None:
        self.major = major
        self.minor = minor
        self.offered = offered
        self.granted = granted
        self.passthrough = bool(granted & p.PASSTHROUGH)
        self.writeback = bool(granted & p.WRITEBACK_CACHE)

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form for ``status()``."""
        return {
            "protocol": f"{self.major}.{self.minor}",
            "offered": sorted(n for f, n in p.FLAG_NAMES.items() if self.offered & f),
            "granted": sorted(n for f, n in p.FLAG_NAMES.items() if self.granted & f),
            "data_mode": "passthrough"
            if self.passthrough
            else "writeback-cache"
            if self.writeback
            else "write-through",
        }


def _buffer(size: int) -> mmap.mmap:
    """A request buffer whose pages are touched only as requests fill them.

    ``bytearray(size)`` zeroes (and so dirties) every page: 1 MiB per request
    thread, in every server, even one that only ever serves small requests.
    """
    return mmap.mmap(-1, size)


class Session:
    """A FUSE connection serving one handler table.

    Args:
        table: opcode -> handler (see ``ops.Handler``).
        threads: request threads.
        passthrough: ``"auto"`` (use it when offered) or ``"off"``.
        on_init: called with the ``InitInfo`` before the INIT reply is sent,
            so handlers can learn the data mode.
    """

    def __init__(
        self,
        table: Mapping[int, Callable[[int, memoryview, int, int], object]],
        threads: int = 2,
        passthrough: str = "auto",
        on_init: Callable[[InitInfo], None] | None = None,
    ) -> None:
        self.table = table
        self.threads = max(1, threads)
        self.want_passthrough = passthrough == "auto"
        self.on_init = on_init
        self.fd = -1
        self.target = ""
        self.init: InitInfo | None = None
        self.bufsize = MAX_PAGES * PAGE + PAGE
        #: requests seen per opcode (for tests and statistics).
        self.counts = [0] * 64
        self._fds: list[int] = []
        #: the per-opcode profiler, when ``LAYERFS_FUSE_PROFILE`` asks for one.
        self.profiler: Profiler | None = None
        if os.environ.get("LAYERFS_FUSE_PROFILE"):
            from . import profile

            self.profiler = profile.from_env()

    # -- mount ---------------------------------------------------------------------

    def mount(self, target: str, source: str, readonly: bool, subtype: str = "layerfs") -> None:
        """Open /dev/fuse and mount it on ``target`` (via fusermount3 when not root).

        Raises:
            OSError: the device or mount(2) failed.
        """
        if os.geteuid() != 0:
            from . import fusermount

            self.fd = fusermount.mount(target, source, subtype, readonly)
            self._fds.append(self.fd)
            self.target = target
            return
        self.fd = fuse_dev.open_device()
        self._fds.append(self.fd)
        flags = sysmount.MS_RDONLY if readonly else 0
        data = fuse_dev.mount_options(self.fd, uid=os.getuid(), gid=os.getgid())
        fuse_dev.mount_fuse(self.fd, target, subtype, source, flags, data)
        self.target = target

    def adopt(self, fd: int, target: str) -> None:
        """Serve an fd mounted by someone else (``fusermount3``)."""
        self.fd = fd
        self._fds.append(fd)
        self.target = target

    # -- init ------------------------------------------------------------------------

    def handshake(self) -> InitInfo:
        """Read INIT and reply to it.

        Raises:
            OSError: the connection died first (ENODEV) or the kernel is too old.
        """
        buf = _buffer(self.bufsize)
        while True:
            n = os.readv(self.fd, [buf])
            _, opcode, unique, _, _, _, _, _, _ = p.IN_HEADER.unpack_from(buf)
            if opcode == p.INIT:
                break
            self._reply_error(self.fd, unique, errno.EIO)
        major, minor, max_readahead, flags, flags2 = p.INIT_IN.unpack_from(buf, p.IN_HEADER.size)
        if major != 7 or minor < 31:
            self._reply_error(self.fd, unique, errno.EPROTO)
            raise OSError(errno.EPROTO, f"FUSE protocol {major}.{minor} is too old")
        offered = flags
        if flags & p.INIT_EXT and n >= p.IN_HEADER.size + p.INIT_IN.size:
            offered |= flags2 << 32
        want = WANTED
        if self.want_passthrough and minor >= 40:
            want |= p.PASSTHROUGH
        granted = offered & want
        if not granted & p.PASSTHROUGH:
            granted |= offered & p.WRITEBACK_CACHE
        info = InitInfo(major, minor, offered, granted)
        self.init = info
        if self.on_init is not None:
            self.on_init(info)
        out = p.INIT_OUT.pack(
            7,
            min(minor, p.KERNEL_MINOR),
            max_readahead,
            granted & 0xFFFFFFFF,
            64,  # max_background
            48,  # congestion_threshold
            MAX_PAGES * PAGE,  # max_write
            1,  # time_gran (ns)
            MAX_PAGES,
            0,
            granted >> 32,
            1 if info.passthrough else 0,  # max_stack_depth
        )
        os.writev(self.fd, [p.OUT_HEADER.pack(p.OUT_HEADER.size + len(out), 0, unique), out])
        return info

    # -- serving ----------------------------------------------------------------------

    def backing_open(self, fd: int) -> int:
        """Register a passthrough backing file (see ``fuse_dev.backing_open``)."""
        return fuse_dev.backing_open(self.fd, fd)

    def backing_close(self, backing_id: int) -> None:
        """Drop a passthrough backing id."""
        fuse_dev.backing_close(self.fd, backing_id)

    def serve(self) -> None:
        """Run the request threads until the filesystem goes away."""
        prof = self.profiler
        if prof is not None:
            prof.install()
        workers = []
        for i in range(self.threads):
            fd = self.fd if i == 0 else fuse_dev.clone(self.fd)
            if i:
                self._fds.append(fd)
            if prof is None:
                t = threading.Thread(target=self._loop, args=(fd,), name=f"fuse-{i}", daemon=True)
            else:
                t = threading.Thread(
                    target=prof.loop, args=(self, fd), name=f"fuse-{i}", daemon=True
                )
            workers.append(t)
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        if prof is not None:
            prof.uninstall()
            try:
                prof.write()
            except OSError as exc:
                log.error("writing the profile: %s", exc)

    def close(self) -> None:
        """Close the device fds (aborts the connection if still mounted)."""
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    @staticmethod
    def _reply_error(fd: int, unique: int, err: int) -> None:
        try:
            os.write(fd, p.OUT_HEADER.pack(p.OUT_HEADER.size, -err, unique))
        except OSError:
            pass

    def _loop(self, fd: int) -> None:
        buf = _buffer(self.bufsize)
        view = memoryview(buf)
        table = self.table
        counts = self.counts
        unpack = p.IN_HEADER.unpack_from
        pack_out = p.OUT_HEADER.pack
        readv = os.readv
        writev = os.writev
        while True:
            try:
                n = readv(fd, [buf])
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue
                if exc.errno != errno.ENODEV:
                    log.error("reading /dev/fuse: %s", exc)
                return
            _, opcode, unique, nodeid, uid, gid, _, _, _ = unpack(buf)
            if opcode < 64:
                counts[opcode] += 1
            handler = table.get(opcode)
            err = 0
            out: object = b""
            if handler is None:
                err = errno.ENOSYS
            else:
                try:
                    out = handler(nodeid, view[40:n], uid, gid)
                except OSError as exc:
                    err = exc.errno or errno.EIO
                except Exception:
                    log.exception("request %d failed", opcode)
                    err = errno.EIO
                if out is None and not err:
                    continue
                if type(out) is int:
                    err = out  # a handler's cheap way to answer an expected errno
            try:
                if err:
                    os.write(fd, pack_out(16, -err, unique))
                elif type(out) is list:
                    size = 16 + sum(len(b) for b in out)
                    writev(fd, [pack_out(size, 0, unique), *out])
                else:
                    writev(fd, [pack_out(16 + len(out), 0, unique), out])  # type: ignore[arg-type,list-item]
            except OSError as exc:
                if exc.errno == errno.ENODEV:
                    return
                if exc.errno != errno.ENOENT:  # ENOENT: the caller was interrupted
                    log.error("replying to request %d: %s", opcode, exc)
