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
