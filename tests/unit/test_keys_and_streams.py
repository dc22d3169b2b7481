"""Key validation, compression detection and OCI chain IDs."""

import gzip
import hashlib
import io
import lzma

import pytest
import zstandard

from layerfs import errors
from layerfs._keys import validate_key
from layerfs._streams import DigestReader, chain_id, decompressed


@pytest.mark.parametrize("key", ["a", "default/1/sha256:abc", "x" * 255, "名前"])
def test_good_keys(key: str) -> None:
    assert validate_key(key) == key


@pytest.mark.parametrize("key", ["", "/", "/abs", "a\x00b", "x" * 256, "é" * 128, "tab\there", 5])
def test_bad_keys(key: object) -> None:
    with pytest.raises(errors.InvalidArgument):
        validate_key(key)


@pytest.mark.parametrize(
    "compress", [lambda b: b, gzip.compress, zstandard.ZstdCompressor().compress, lzma.compress]
)
def test_decompressed_by_magic(compress) -> None:  # type: ignore[no-untyped-def]
    payload = b"tar bytes " * 1000
    assert decompressed(io.BytesIO(compress(payload))).read() == payload


def test_text_stream_is_refused() -> None:
    with pytest.raises(errors.InvalidArgument):
        decompressed(io.StringIO("not bytes"))  # type: ignore[arg-type]


def test_digest_reader_covers_everything() -> None:
    data = bytes(range(256)) * 100
    r = DigestReader(io.BytesIO(data))
    r.read(1000)
    r.read_rest()
    assert r.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert r.size == len(data)


def test_chain_id_follows_the_oci_rule() -> None:
    d1 = "sha256:" + "1" * 64
    d2 = "sha256:" + "2" * 64
    assert chain_id(None, d1) == d1
    expected = "sha256:" + hashlib.sha256(f"{d1} {d2}".encode()).hexdigest()
    assert chain_id(d1, d2) == expected
