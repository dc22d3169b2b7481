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
    """Reads through ``inner`` and keeps the SHA-256 and size of all bytes read."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self._hash = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buf))
        if not data:
            return 0
        buf[: len(data)] = data
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def read_rest(self) -> None:
        """Consume and hash whatever is left."""
        while True:
            data = self._inner.read(1 << 20)
            if not data:
                return
            self._hash.update(data)
            self.size += len(data)

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of everything read so far."""
        return "sha256:" + self._hash.hexdigest()


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
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)  # type: ignore[return-value]
    if head.startswith(XZ_MAGIC):
        return lzma.LZMAFile(raw)  # type: ignore[return-value]
    return raw  # type: ignore[return-value]


def chain_id(parent_chain: str | None, diff_id: str) -> str:
    """The OCI chain ID of a layer with ``diff_id`` on top of ``parent_chain``."""
    if parent_chain is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent_chain} {diff_id}".encode()).hexdigest()
