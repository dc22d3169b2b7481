"""Write an OCI layer tar from a stream of ``DiffEntry`` values.

The output is deterministic for a given tree: entries in sorted path order
(parents first), PAX format, numeric owners with empty user and group
names, xattrs as ``SCHILY.xattr.*`` records, deletions as ``.wh.<name>``
and opaque directories followed by ``.wh..wh..opq``.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable, Iterator

from ._apply import OPAQUE_MARKER, WHITEOUT_PREFIX
from ._diff import DiffEntry, image_xattrs
from ._types import ChangeKind

CHUNK = 1 << 20


class _Buffer:
    """A write-only file object whose contents are taken out in chunks."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.size += len(data)
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        self.size = 0
        return data


def _marker(path: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(path)
    info.type = tarfile.REGTYPE
    info.mode = 0o644
    info.mtime = 0
    info.uname = info.gname = ""
    return info


def _tarinfo(entry: DiffEntry, st: os.stat_result) -> tarfile.TarInfo:
    assert entry.source is not None
    info = tarfile.TarInfo(entry.path)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.uname = info.gname = ""
    info.mtime = st.st_mtime_ns // 1_000_000_000
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
    elif stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry.source)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif stat.S_ISFIFO(mode):
        info.type = tarfile.FIFOTYPE
    else:
        info.type = tarfile.REGTYPE
        info.size = st.st_size
    headers = dict(info.pax_headers)
    for name, value in sorted(image_xattrs(entry.source).items()):
        headers["SCHILY.xattr." + name] = value.decode("utf-8", "surrogateescape")
    info.pax_headers = headers
    return info


def write_tar(entries: Iterable[DiffEntry]) -> Iterator[bytes]:
    """Yield the bytes of the OCI layer tar for ``entries``, about 1 MiB at a time."""
    buf = _Buffer()
    links: dict[tuple[int, int], str] = {}
    tar = tarfile.open(fileobj=buf, mode="w|", format=tarfile.PAX_FORMAT)  # type: ignore[call-overload]
    for entry in entries:
        if entry.kind is ChangeKind.DELETE:
            head, _, base = entry.path.rpartition("/")
            name = f"{head}/{WHITEOUT_PREFIX}{base}" if head else WHITEOUT_PREFIX + base
            tar.addfile(_marker(name))
        else:
            assert entry.source is not None
            st = os.lstat(entry.source)
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    info = _tarinfo(entry, st)
                    info.type, info.linkname, info.size = tarfile.LNKTYPE, first, 0
                    tar.addfile(info)
                    continue
                links[(st.st_dev, st.st_ino)] = entry.path
            info = _tarinfo(entry, st)
            if info.type == tarfile.REGTYPE:
                with open(entry.source, "rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
            if entry.opaque:
                tar.addfile(_marker(f"{entry.path}/{OPAQUE_MARKER}"))
        if buf.size >= CHUNK:
            yield buf.take()
    tar.close()
    yield buf.take()
