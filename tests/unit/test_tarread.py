"""Reading layer tars: where an archive may end, header bounds, trailing data, size limits."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import layerfs
from layerfs import errors
from layerfs._sys import openat2
from layerfs._tarread import MAX_HEADER_SIZE
from layerfs.testing.suite import build_tar
from layerfs.testing.trees import describe


@pytest.fixture
def store(tmp_path: Path) -> Iterator[layerfs.Store]:
    s = layerfs.Store(tmp_path / "store", driver="copy")
    try:
        yield s
    finally:
        assert s.check() == []
        s.close()


def _tree(store: layerfs.Store, name: str) -> dict[str, object]:
    rec = store._get(name)
    path = store._driver.direct_path(store._ref_from(rec))
    assert path is not None
    return describe(path)


def _without_end(tar: bytes) -> bytes:
    """The archive without its end-of-archive blocks and record padding."""
    end = len(tar)
    while end >= 512 and tar[end - 512 : end] == bytes(512):
        end -= 512
    return tar[:end]


FILE_DATA = b"hello\n"  # not a multiple of 512: the last entry's data is padded


def test_archive_ending_at_an_entry_boundary_is_whole(store: layerfs.Store) -> None:
    tar = build_tar([("d", None), ("d/f", FILE_DATA), ("g", None)])
    info = store.apply(io.BytesIO(_without_end(tar)))
    assert sorted(_tree(store, info.name)) == ["d", "d/f", "g"]


def test_archive_ending_right_after_data_without_padding_is_whole(
    store: layerfs.Store,
) -> None:
    body = _without_end(build_tar([("d", None), ("d/f", FILE_DATA)]))
    unpadded = body[: len(body) - (512 - len(FILE_DATA))]
    info = store.apply(io.BytesIO(unpadded))
    assert sorted(_tree(store, info.name)) == ["d", "d/f"]
    assert info.labels["layerfs.diff-id"] == "sha256:" + hashlib.sha256(unpadded).hexdigest()


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda body: body[: len(body) - 512 + 3], id="inside-data"),
        pytest.param(lambda body: body[: len(body) - 1536 + 100], id="inside-header"),
        pytest.param(lambda body: body + b"\x01" * 100, id="partial-garbage-header"),
    ],
)
def test_archive_cut_inside_an_entry_is_refused(store: layerfs.Store, cut: object) -> None:
    body = _without_end(build_tar([("a", b"x" * 700), ("f", b"y" * 600)]))
    with pytest.raises(errors.InvalidArgument):
        store.apply(io.BytesIO(cut(body)))  # type: ignore[operator]
    assert list(store.walk()) == []


def test_compressed_streams_cut_short_are_refused(store: layerfs.Store) -> None:
    zstandard = pytest.importorskip("zstandard")
    body = _without_end(build_tar([("a", os.urandom(3000))]))
    # Cut the compressed stream where the tar inside is still whole up to an entry.
    for packed in (gzip.compress(body), zstandard.ZstdCompressor().compress(body)):
        with pytest.raises(errors.InvalidArgument):
            store.apply(io.BytesIO(packed[:-6]))
    assert list(store.walk()) == []


def test_oversized_extended_headers_are_refused(store: layerfs.Store) -> None:
    big = "x" * (MAX_HEADER_SIZE + 1)
    pax = io.BytesIO()
    with tarfile.open(fileobj=pax, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"comment": big}
        tar.addfile(info)
    gnu = io.BytesIO()
    with tarfile.open(fileobj=gnu, mode="w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("n" * (MAX_HEADER_SIZE + 10)))
    for data in (pax.getvalue(), gnu.getvalue()):
        with pytest.raises(errors.InvalidArgument, match="extended header"):
            store.apply(io.BytesIO(data))
    # Just under the cap is fine (the name is too long for Linux, which says so).
    ok = io.BytesIO()
    with tarfile.open(fileobj=ok, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"comment": "y" * (MAX_HEADER_SIZE - 100)}
        tar.addfile(info)
    store.apply(io.BytesIO(ok.getvalue()))


def test_zeros_after_the_end_marker_count_in_the_digest(store: layerfs.Store) -> None:
    tar = build_tar([("f", b"1")])
    a = store.apply(io.BytesIO(tar))
    b = store.apply(io.BytesIO(tar + bytes(512 * 30)))
    assert a.name != b.name  # the digest covers every byte of the stream
    assert _tree(store, a.name) == _tree(store, b.name)


def test_data_after_the_end_marker_is_refused(store: layerfs.Store) -> None:
    tar = build_tar([("f", b"1")])
    with pytest.raises(errors.InvalidArgument, match="after its end-of-archive"):
        store.apply(io.BytesIO(tar + b"hidden payload" + bytes(498)))
    assert list(store.walk()) == []


def test_max_size_limits_the_uncompressed_layer(store: layerfs.Store) -> None:
    tar = build_tar([("f", os.urandom(100_000))])
    with pytest.raises(errors.InvalidArgument, match="max_size"):
        store.apply(io.BytesIO(gzip.compress(tar)), max_size=50_000)
    assert list(store.walk()) == []
    store.apply(io.BytesIO(gzip.compress(tar)), max_size=len(tar))
    with pytest.raises(errors.InvalidArgument, match="max_size"):
        store.apply(io.BytesIO(tar), max_size=-1)


@pytest.fixture(params=["openat2", "walk"])
def resolution(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with openat2(RESOLVE_IN_ROOT), and again with the portable walk."""
    calls: list[str] = []
    real = openat2.open_in_root

    def counting(dirfd: int, path: str, flags: int) -> int | None:
        calls.append(path)
        return real(dirfd, path, flags)

    monkeypatch.setattr(openat2, "open_in_root", counting)
    if request.param == "walk":
        monkeypatch.setattr(openat2, "enabled", False)
    yield request.param
    if request.param == "openat2" and openat2.available():
        assert calls, "openat2 was never asked"


@pytest.mark.parametrize(
    ("link", "lands_at"),
    [
        ("/usr/lib", "usr/lib/x.so"),
        ("../usr/./lib", "usr/lib/x.so"),
        ("/../../usr/lib/../lib", "usr/lib/x.so"),
        ("sub/../../../..", "x.so"),
        ("/hop", "usr/lib/x.so"),
    ],
)
def test_symlinks_resolve_inside_the_root(
    store: layerfs.Store, resolution: str, link: str, lands_at: str
) -> None:
    base = store.apply(
        io.BytesIO(
            build_tar(
                [
                    ("usr", None),
                    ("usr/lib", None),
                    ("hop", ("symlink", "usr/lib")),
                    ("lib", ("symlink", link)),
                ]
            )
        )
    )
    top = store.apply(
        io.BytesIO(build_tar([("lib/x.so", b"elf"), ("lib/y.so", ("hardlink", "lib/x.so"))])),
        parent=base.name,
    )
    tree = _tree(store, top.name)
    y = lands_at.replace("x.so", "y.so")
    assert lands_at in tree and y in tree
    assert tree[lands_at][5] == tree[y][5]  # one hard-link group


def test_symlink_loops_and_files_in_the_way_are_refused(
    store: layerfs.Store, resolution: str
) -> None:
    base = store.apply(
        io.BytesIO(build_tar([("a", ("symlink", "b")), ("b", ("symlink", "/a")), ("f", b"")]))
    )
    for name in ("a/x", "f/x"):
        with pytest.raises(errors.InvalidArgument):
            store.apply(io.BytesIO(build_tar([(name, b"x")])), parent=base.name)
    assert store.check() == []


def test_a_layer_written_by_umoci_applies(store: layerfs.Store, tmp_path: Path) -> None:
    """umoci 0.4 ends its layer tars without end-of-archive blocks or padding."""
    umoci = shutil.which("umoci")
    if umoci is None:
        pytest.skip("umoci is not installed (scripts/setup installs it)")
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hello").write_bytes(b"hello from umoci\n")
    (src / "odd").write_bytes(b"abc")
    image = tmp_path / "image"

    def run(*args: str) -> None:
        subprocess.run([umoci, *args], check=True, capture_output=True, timeout=60)

    run("init", "--layout", str(image))
    run("new", "--image", f"{image}:t")
    run("insert", "--image", f"{image}:t", str(src / "etc"), "/etc")
    run("insert", "--image", f"{image}:t", str(src / "odd"), "/odd")
    import json

    index = json.loads((image / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((image / "blobs" / "sha256" / manifest_digest).read_text())
    config = json.loads(
        (image / "blobs" / "sha256" / manifest["config"]["digest"].split(":")[1]).read_text()
    )
    parent = None
    for layer in manifest["layers"]:
        blob = (image / "blobs" / "sha256" / layer["digest"].split(":")[1]).read_bytes()
        assert not gzip.decompress(blob).endswith(bytes(1024))  # really no end marker
        parent = store.apply(io.BytesIO(blob), parent=parent).name
    diff_ids = config["rootfs"]["diff_ids"]
    assert store.stat(parent).labels["layerfs.diff-id"] == diff_ids[-1]
    tree = _tree(store, parent)
    assert tree["etc/hello"][4] == hashlib.sha256(b"hello from umoci\n").hexdigest()
    assert tree["odd"][4] == hashlib.sha256(b"abc").hexdigest()
