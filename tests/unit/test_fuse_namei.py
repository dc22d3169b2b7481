"""Lookup through many layers: the parallel search finds what the plain loop finds."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from layerfs.drivers.fuse import namei


class _FS:
    """The part of ``UnionFS`` that ``resolve`` reads."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [os.fsencode(r) for r in roots]
        self.root_fds = [os.open(r, os.O_PATH | os.O_DIRECTORY) for r in roots]
        self.opaque_xattr = b"user.overlay.opaque"

    def close(self) -> None:
        for fd in self.root_fds:
            os.close(fd)


@pytest.mark.parametrize("cold_ns", [10**12, -1], ids=["sequential", "parallel"])
def test_resolve_through_forty_layers(
    cold_ns: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(namei, "COLD_NS", cold_ns)  # -1: every miss counts as cold
    roots = [tmp_path / f"l{i}" for i in range(40)]
    for r in roots:
        r.mkdir()
    (roots[39] / "bottom").write_text("b")
    (roots[25] / "mid").write_text("upper one")
    (roots[33] / "mid").write_text("hidden")
    os.mknod(roots[20] / "gone", stat.S_IFCHR, os.makedev(0, 0))
    (roots[30] / "gone").write_text("whited out above")
    (roots[12] / "d").mkdir()
    (roots[35] / "d").mkdir()
    fs = _FS(roots)
    try:
        layers = tuple(range(40))
        hit = namei.resolve(fs, layers, b"/bottom")  # type: ignore[arg-type]
        assert hit is not None and hit[0] == 39
        hit = namei.resolve(fs, layers, b"/mid")  # type: ignore[arg-type]
        assert hit is not None and hit[0] == 25 and hit[2].st_size == len("upper one")
        assert namei.resolve(fs, layers, b"/gone") is None  # type: ignore[arg-type]
        assert namei.resolve(fs, layers, b"/absent") is None  # type: ignore[arg-type]
        hit = namei.resolve(fs, layers, b"/d")  # type: ignore[arg-type]
        assert hit is not None and hit[0] == 12 and hit[1] == (12, 35)
        # Only the layers below the parent's topmost are searched.
        assert namei.resolve(fs, layers[26:], b"/mid")[0] == 33  # type: ignore[arg-type,index]
    finally:
        fs.close()


def test_inode_readahead_reads_every_layer_and_leaks_nothing(tmp_path: Path) -> None:
    import time

    roots = [tmp_path / f"l{i}" for i in range(3)]
    for i, r in enumerate(roots):
        (r / "dir").mkdir(parents=True)
        for j in range(150):  # more than one chunk per layer
            (r / "dir" / f"f{i}-{j}").write_text("x")
    fds_before = len(os.listdir("/proc/self/fd"))
    fs = _FS(roots)
    seen: list[bytes] = []
    real_lstat = os.lstat

    def spy(path, *, dir_fd=None, **kw):  # type: ignore[no-untyped-def]
        if dir_fd is not None:
            seen.append(os.fsencode(path))
        return real_lstat(path, dir_fd=dir_fd, **kw)

    try:
        os.lstat = spy  # type: ignore[assignment]
        namei.warm_directory(fs, b"/dir", (0, 1, 2))  # type: ignore[arg-type]
        namei.warm_directory(fs, b"/dir", (0, 1, 2))  # type: ignore[arg-type]  # a no-op meanwhile
        deadline = time.monotonic() + 30
        while b"/dir" in namei._warming and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.lstat = real_lstat  # type: ignore[assignment]
        fs.close()
    assert b"/dir" not in namei._warming
    assert len(seen) == 450, "every entry of every layer once"
    assert len(set(seen)) == 450
    assert len(os.listdir("/proc/self/fd")) == fds_before
