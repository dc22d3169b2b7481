"""Reading a layer tar's entries one by one, with bounds and a strict end.

Facts about real layer tars that this module relies on:

- A tar ends with two zero blocks, but not every writer writes them.
  umoci 0.4 stops right after the last entry's data, without even padding
  it to a block; containerd, Docker and GNU tar all accept that. So an
  archive that ends at an entry boundary (or inside the last entry's
  padding) is whole. One that ends inside an entry's data, or inside a
  header, is truncated. A compressed stream cut short is caught by its
  decompressor.
- ``tarfile`` reads PAX and GNU long-name headers whole, at whatever size
  the header declares. Go's archive/tar caps them at 1 MiB, and so do we.
- The layer's digest (its diff ID) covers every byte of the stream,
  including what follows the end-of-archive marker. Zero blocks there are
  common (tar pads to a 10 KiB record); anything else is data the digest
  vouches for but no tool would unpack, so it is refused.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from typing import BinaryIO, Self

from . import errors

#: The largest PAX or GNU long-name header accepted (as Go's archive/tar).
MAX_HEADER_SIZE = 1 << 20

_SPECIAL_HEADERS = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class _Feed(io.RawIOBase):
    """The tar's bytes as ``tarfile`` reads them, counted, with end-of-stream noted."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.consumed = 0
        self.at_eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        want = len(buf)
        got = 0
        # Fill the whole request unless the stream ends: tarfile treats a
        # short read as the end of the archive.
        while got < want:
            data = self._inner.read(want - got)
            if not data:
                self.at_eof = True
                break
            buf[got : got + len(data)] = data
            got += len(data)
        self.consumed += got
        return got


def _bounded_tarinfo(state: dict[str, bool]) -> type[tarfile.TarInfo]:
    """A TarInfo class that caps header sizes and notes the end-of-archive block."""

    class BoundedTarInfo(tarfile.TarInfo):
        # TarFile.next() reads each header through fromtarfile; a zero block
        # makes it raise EOFHeaderError. Hooking that public classmethod,
        # not frombuf, holds across CPython's June 2025 tarfile security
        # release (3.11.13, 3.12.11, 3.13.4 and Debian's backports), which
        # reads headers through a private _frombuf instead.
        @classmethod
        def fromtarfile(cls, tar: tarfile.TarFile) -> Self:
            try:
                return super().fromtarfile(tar)
            except tarfile.EOFHeaderError:  # type: ignore[attr-defined]  # not in typeshed
                state["end"] = True
                raise

        def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
            if self.type in _SPECIAL_HEADERS and self.size > MAX_HEADER_SIZE:
                raise errors.InvalidArgument(
                    f"layer tar has a {self.size}-byte extended header (PAX or GNU long "
                    f"name) at offset {self.offset}; at most {MAX_HEADER_SIZE} is accepted"
                )
            return super()._proc_member(tar)  # type: ignore[misc,no-any-return]

    return BoundedTarInfo


def iter_members(stream: BinaryIO) -> Iterator[tuple[tarfile.TarInfo, tarfile.TarFile]]:
    """Yield each entry of the uncompressed tar ``stream`` with its open archive.

    The caller reads a regular file's data with ``tar.extractfile(member)``
    before asking for the next entry. When the generator finishes, the
    whole stream has been read (so a digest over it is complete).

    Raises:
        errors.InvalidArgument: not a tar, truncated, an oversized extended
            header, or non-zero data after the end-of-archive marker.
    """
    feed = _Feed(stream)
    state = {"end": False}
    last: tarfile.TarInfo | None = None
    tar: tarfile.TarFile | None = None
    try:
        # bufsize=BLOCKSIZE: tarfile never reads past the block it needs, so
        # what follows the end-of-archive block is still in ``feed``.
        tar = tarfile.open(
            fileobj=feed,
            mode="r|",
            errorlevel=2,
            tarinfo=_bounded_tarinfo(state),
            bufsize=tarfile.BLOCKSIZE,
        )
        for member in tar:
            tar.members.clear()  # type: ignore[attr-defined]  # stream mode keeps every member
            last = member
            yield member, tar
    except (tarfile.ReadError, EOFError) as exc:
        # tarfile seeks over the last entry's padding before the next
        # header; a stream that ends in that padding ends at an entry boundary.
        if not (last is not None and feed.at_eof and _data_complete(last, feed.consumed)):
            raise errors.InvalidArgument(
                f"layer is not a valid tar or is truncated: {exc}"
            ) from exc
        return
    except tarfile.TarError as exc:
        raise errors.InvalidArgument(f"layer is not a valid tar: {exc}") from exc
    assert tar is not None
    if state["end"]:
        _check_trailer(feed)
    elif feed.consumed != tar.offset:
        raise errors.InvalidArgument(
            f"layer tar is truncated or corrupt at byte {tar.offset}: neither a valid "
            "header nor the end of the stream follows the last entry"
        )


def _data_complete(member: tarfile.TarInfo, consumed: int) -> bool:
    data_size = member.size if member.isreg() else 0
    return consumed >= member.offset_data + data_size


def _check_trailer(feed: _Feed) -> None:
    """Read what follows the end-of-archive block: zeros are fine, data is not."""
    while True:
        chunk = feed.read(1 << 20)
        if not chunk:
            return
        if chunk.count(0) != len(chunk):
            raise errors.InvalidArgument(
                "layer tar has data after its end-of-archive marker; the layer digest "
                "would cover bytes that no tool unpacks. Rebuild the layer without them"
            )
