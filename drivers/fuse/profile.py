"""Opt-in per-opcode profile of the server: where each request's time goes.

Set ``LAYERFS_FUSE_PROFILE`` to an absolute directory in the environment a
server starts in, and it serves through an instrumented request loop, then
writes ``profile-<pid>.json`` there when the filesystem goes away. Unset,
nothing here is imported and the plain loop runs (zero cost when off).

Per opcode the profile holds the request count and the nanoseconds spent in:

- ``decode``: the header unpack and dispatch, the body's struct unpacks and
  name extraction;
- ``union``: the handler's own Python (overlay semantics, node table, locks),
  i.e. what is left of the handler once the other three are taken out;
- ``syscalls``: every ``os`` call (and ``fsops``/``fuse_dev`` ioctl wrapper)
  the handler makes, timed around the call (a deep lookup's parallel probes
  run on other threads: the handler's wait for them counts as ``union``);
- ``reply``: packing the reply body (``fuse_attr``, ``fuse_entry_out``...)
  and writing it to ``/dev/fuse``.

The time a thread waits in ``readv`` for the next request is not counted.
Instrumentation adds roughly 0.1 µs per timed call; compare profiles with
each other, and take absolute speed from the bench's figures.

``python -m layerfs.drivers.fuse.profile DIR`` prints the table of every
profile in ``DIR`` summed.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from . import protocol as p


class Served(Protocol):
    """What the profiled loop needs of a ``Session`` (named so, not imported: the
    session imports this module)."""

    @property
    def bufsize(self) -> int: ...
    @property
    def table(self) -> Mapping[int, Callable[[int, memoryview, int, int], object]]: ...
    @property
    def counts(self) -> list[int]: ...


__all__ = ["ENV", "Profiler", "from_env", "load", "merge", "format_table", "FIELDS"]

log = logging.getLogger("layerfs.fuse")

#: The environment variable naming the directory profiles are written to.
ENV = "LAYERFS_FUSE_PROFILE"

#: Per-opcode fields, in the order of the arrays and of the JSON.
FIELDS = ("count", "decode_ns", "union_ns", "syscalls_ns", "reply_ns")

#: ``os`` functions a handler may call; each is timed as a syscall.
_OS_CALLS = (
    "lstat", "stat", "fstat", "statvfs", "open", "close", "read", "pread", "pwrite",
    "mknod", "mkdir", "rmdir", "unlink", "rename", "link", "symlink", "readlink",
    "chmod", "lchown", "chown", "fchown", "fchmod", "utime", "truncate", "ftruncate",
    "getxattr", "setxattr", "listxattr", "removexattr", "scandir", "listdir",
    "fsync", "fdatasync", "lseek", "sync", "copy_file_range", "sendfile",
)  # fmt: skip

_now = time.perf_counter_ns


class _Acc(threading.local):
    """Nanoseconds the current request spent in each timed kind of call."""

    def __init__(self) -> None:
        self.sys = 0
        self.dec = 0
        self.rep = 0


class Profiler:
    """Collects the per-opcode profile of one server.

    Args:
        directory: where ``write`` puts the JSON file.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.acc = _Acc()
        self._tables: list[list[list[int]]] = []
        self._lock = threading.Lock()
        self._restore: list[tuple[object, str, object]] = []

    # -- instrumentation --------------------------------------------------------------

    def install(self) -> None:
        """Wrap the syscalls, struct codecs and reply packers the handlers use."""
        from layerfs._sys import fsops, fuse_dev

        from . import ops

        acc = self.acc
        for name in _OS_CALLS:
            if hasattr(os, name):
                self._patch(os, name, _timed(getattr(os, name), acc, "sys"))
        for mod in (fsops, fuse_dev):
            for name in dir(mod):
                fn = getattr(mod, name)
                if (
                    not name.startswith("_")
                    and callable(fn)
                    and getattr(fn, "__module__", "") == mod.__name__
                ):
                    self._patch(mod, name, _timed(fn, acc, "sys"))
        # Struct objects reached as ``p.NAME.unpack_from`` / ``p.NAME.pack``.
        for name in dir(p):
            obj = getattr(p, name)
            if isinstance(obj, struct.Struct):
                self._patch(p, name, _TimedStruct(obj, acc))
        self._patch(p, "split_names", _timed(p.split_names, acc, "dec"))
        # Bound codecs and helpers the handlers keep as module globals.
        for name in dir(ops):
            obj = getattr(ops, name)
            owner = getattr(obj, "__self__", None)
            if isinstance(owner, struct.Struct):
                kind = "dec" if obj.__name__.startswith("unpack") else "rep"
                self._patch(ops, name, _timed(obj, acc, kind))

    def uninstall(self) -> None:
        """Undo ``install``."""
        for obj, name, old in reversed(self._restore):
            setattr(obj, name, old)
        self._restore.clear()

    def _patch(self, obj: object, name: str, new: object) -> None:
        self._restore.append((obj, name, getattr(obj, name)))
        setattr(obj, name, new)

    # -- the instrumented loop ----------------------------------------------------------

    def new_table(self) -> list[list[int]]:
        """A per-thread table: opcode -> the ``FIELDS`` counters."""
        table = [[0] * len(FIELDS) for _ in range(64)]
        with self._lock:
            self._tables.append(table)
        return table

    def loop(self, session: Served, fd: int) -> None:
        """``Session._loop`` with every request timed (same replies, same errors)."""
        buf = bytearray(session.bufsize)
        view = memoryview(buf)
        handlers = session.table
        counts = session.counts
        table = self.new_table()
        acc = self.acc
        unpack = p.IN_HEADER.unpack_from
        pack_out = p.OUT_HEADER.pack
        readv = os.readv
        writev = os.writev
        write = os.write
        while True:
            try:
                n = readv(fd, [buf])
            except OSError as exc:
                if exc.errno in (errno.EINTR, errno.EAGAIN, errno.ENOENT):
                    continue
                if exc.errno != errno.ENODEV:
                    log.error("reading /dev/fuse: %s", exc)
                return
            t0 = _now()
            _, opcode, unique, nodeid, uid, gid, _, _, _ = unpack(buf)
            if opcode < 64:
                counts[opcode] += 1
            handler = handlers.get(opcode)
            err = 0
            out: object = b""
            acc.sys = acc.dec = acc.rep = 0
            t1 = _now()
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
                if type(out) is int:
                    err = out
            t2 = _now()
            if out is not None or err:
                try:
                    if err:
                        write(fd, pack_out(16, -err, unique))
                    elif type(out) is list:
                        size = 16 + sum(len(b) for b in out)
                        writev(fd, [pack_out(size, 0, unique), *out])
                    else:
                        writev(fd, [pack_out(16 + len(out), 0, unique), out])  # type: ignore[arg-type,list-item]
                except OSError as exc:
                    if exc.errno == errno.ENODEV:
                        return
                    if exc.errno != errno.ENOENT:
                        log.error("replying to request %d: %s", opcode, exc)
            t3 = _now()
            row = table[opcode & 63]
            row[0] += 1
            row[1] += t1 - t0 + acc.dec
            row[2] += t2 - t1 - acc.dec - acc.sys - acc.rep
            row[3] += acc.sys
            row[4] += t3 - t2 + acc.rep

    # -- results ----------------------------------------------------------------------

    def result(self) -> dict[str, dict[str, int]]:
        """Opcode name -> the ``FIELDS`` summed over the threads."""
        out: dict[str, dict[str, int]] = {}
        with self._lock:
            tables = list(self._tables)
        for op in range(64):
            row = [sum(t[op][i] for t in tables) for i in range(len(FIELDS))]
            if row[0]:
                out[p.OPCODE_NAMES.get(op, str(op))] = dict(zip(FIELDS, row, strict=True))
        return out

    def write(self) -> str:
        """Write ``profile-<pid>.json`` in the directory; return its path."""
        path = os.path.join(self.directory, f"profile-{os.getpid()}.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.result(), f)
        os.rename(tmp, path)
        return path


class _TimedStruct:
    """A ``struct.Struct`` stand-in timing ``unpack_from`` as decode and ``pack`` as reply."""

    def __init__(self, inner: struct.Struct, acc: _Acc) -> None:
        self._inner = inner
        self.size = inner.size
        self.format = inner.format
        self.unpack_from = _timed(inner.unpack_from, acc, "dec")
        self.unpack = _timed(inner.unpack, acc, "dec")
        self.pack = _timed(inner.pack, acc, "rep")
        self.pack_into = _timed(inner.pack_into, acc, "rep")


def _timed(fn: Callable[..., Any], acc: _Acc, kind: str) -> Callable[..., Any]:
    if kind == "sys":

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = _now()
            try:
                return fn(*args, **kwargs)
            finally:
                acc.sys += _now() - t

    elif kind == "dec":

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = _now()
            try:
                return fn(*args, **kwargs)
            finally:
                acc.dec += _now() - t

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = _now()
            try:
                return fn(*args, **kwargs)
            finally:
                acc.rep += _now() - t

    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


def from_env(environ: Mapping[str, str] = os.environ) -> Profiler | None:
    """A profiler when ``LAYERFS_FUSE_PROFILE`` names an absolute directory, else None."""
    directory = environ.get(ENV, "")
    if not directory:
        return None
    if not os.path.isabs(directory):
        log.warning("%s=%r is not an absolute path; not profiling", ENV, directory)
        return None
    return Profiler(directory)


# -- reading profiles ----------------------------------------------------------------------


def load(directory: str) -> list[dict[str, dict[str, int]]]:
    """Every profile written in ``directory``."""
    out = []
    for name in sorted(os.listdir(directory)):
        if name.startswith("profile-") and name.endswith(".json"):
            with open(os.path.join(directory, name)) as f:
                out.append(json.load(f))
    return out


def merge(profiles: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    """Sum profiles opcode by opcode."""
    total: dict[str, dict[str, int]] = {}
    for prof in profiles:
        for op, row in prof.items():
            acc = total.setdefault(op, dict.fromkeys(FIELDS, 0))
            for k in FIELDS:
                acc[k] += int(row.get(k, 0))
    return total


def per_request_us(row: Mapping[str, int]) -> dict[str, float]:
    """µs per request of each part (and ``total``) of one opcode's row."""
    n = max(1, row["count"])
    parts = {k[: -len("_ns")]: row[k] / n / 1000 for k in FIELDS[1:]}
    parts["total"] = sum(parts.values())
    return parts


def format_table(profile: Mapping[str, Mapping[str, int]]) -> str:
    """A text table: opcode, count, µs per request per part, share of all server time."""
    rows = sorted(profile.items(), key=lambda kv: -sum(kv[1][k] for k in FIELDS[1:]))
    grand = sum(sum(r[k] for k in FIELDS[1:]) for _, r in rows) or 1
    head = f"{'opcode':<12}{'count':>9}{'decode':>9}{'union':>9}{'syscalls':>9}{'reply':>9}{'total':>9}{'share':>7}"
    lines = [head, f"{'':<21}{'µs/request':^45}"]
    for op, row in rows:
        us = per_request_us(row)
        share = sum(row[k] for k in FIELDS[1:]) / grand
        lines.append(
            f"{op:<12}{row['count']:>9}{us['decode']:>9.2f}{us['union']:>9.2f}"
            f"{us['syscalls']:>9.2f}{us['reply']:>9.2f}{us['total']:>9.2f}{share:>7.0%}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the summed profile of a directory (``python -m ...profile DIR``)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(f"usage: python -m layerfs.drivers.fuse.profile DIR  (the {ENV} directory)")
        return 2
    print(format_table(merge(load(args[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
