"""Byte streams for layer tars: compression by magic, and a digesting reader."""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
from typing import BinaryIO

from . import errors

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ\x00"


class _Prefixed(io.RawIOBase):
    """A reader that returns ``prefix`` and then the rest of ``inner``."""

    def __init__(self, prefix: bytes, inner: BinaryIO) -> None:
        self._prefix = prefix
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buf), len(self._prefix))
            buf[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._inner.read(len(buf))
        if not data:
            return 0
        buf[: len(data)] = data
        return len(data)


class DigestReader(io.RawIOBase):
    """Reads through ``inner`` and keeps the SHA-256 and size of all bytes read.

    Args:
        inner: the (uncompressed) layer stream.
        limit: refuse to read more than this many bytes (None: no limit).
    """

    def __init__(self, inner: BinaryIO, limit: int | None = None) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.size = 0
        self.limit = limit

    def _count(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            raise errors.InvalidArgument(
                f"layer is bigger than max_size={self.limit} bytes uncompressed; "
                "raise the limit to apply it"
            )

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buf))
        if not data:
            return 0
        buf[: len(data)] = data
        self._count(data)
        return len(data)

    def read_rest(self) -> None:
        """Consume and hash whatever is left."""
        while True:
            data = self._inner.read(1 << 20)
            if not data:
                return
            self._count(data)

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of everything read so far."""
        return "sha256:" + self._hash.hexdigest()


class _ZstdReader(io.RawIOBase):
    """Decompresses a zstd stream of one or more frames; a stream cut short is an error.

    zstandard's own ``stream_reader`` ends quietly when the input stops
    inside a frame, which would let a truncated layer pass as a shorter one.
    """

    def __init__(self, inner: BinaryIO) -> None:
        import zstandard

        self._zstd = zstandard
        self._inner = inner
        self._dobj = zstandard.ZstdDecompressor().decompressobj()
        self._pending = b""
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            data = self._dobj.unused_data if self._dobj.eof else b""
            if self._dobj.eof:
                self._dobj = self._zstd.ZstdDecompressor().decompressobj()
                self._started = False
            if not data:
                data = self._inner.read(1 << 20)
            if not data:
                if self._started:
                    raise errors.InvalidArgument(
                        "layer zstd stream is truncated: it ends inside a frame"
                    )
                return 0
            self._started = True
            try:
                self._pending = self._dobj.decompress(data)
            except self._zstd.ZstdError as exc:
                raise errors.InvalidArgument(f"layer zstd stream is corrupt: {exc}") from exc
        n = min(len(buf), len(self._pending))
        buf[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def decompressed(fileobj: BinaryIO) -> BinaryIO:
    """Return a reader of the uncompressed tar in ``fileobj`` (plain, gzip, zstd or xz).

    Raises:
        errors.InvalidArgument: ``fileobj`` is not readable bytes.
    """
    try:
        head = fileobj.read(6)
    except (OSError, AttributeError, TypeError) as exc:
        raise errors.InvalidArgument(f"layer tar cannot be read: {exc}") from exc
    if not isinstance(head, bytes):
        raise errors.InvalidArgument("layer tar must be opened in binary mode")
    raw = io.BufferedReader(_Prefixed(head, fileobj), buffer_size=1 << 20)
    if head.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if head.startswith(ZSTD_MAGIC):
        return io.BufferedReader(_ZstdReader(raw), buffer_size=1 << 20)  # type: ignore[return-value]
    if head.startswith(XZ_MAGIC):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw  # type: ignore[return-value]


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """The OCI chain ID of a layer with ``diff_id`` on top of ``parent_chain``."""
    if parent_chain is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent_chain} {diff_id}".encode()).hexdigest()
