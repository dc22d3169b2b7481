"""Disk usage of a tree that changes while it is walked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from layerfs import _fstree


def test_a_file_removed_during_the_walk_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "keep").write_bytes(b"k" * 8192)
    (tmp_path / "gone").write_bytes(b"g")
    real_scandir = os.scandir

    def listing_then_unlink(path: str):  # type: ignore[no-untyped-def]
        entries = list(real_scandir(path))
        (tmp_path / "gone").unlink(missing_ok=True)  # another process removes it now
        return iter(entries)

    monkeypatch.setattr(_fstree.os, "scandir", listing_then_unlink)
    usage = _fstree.tree_usage(tmp_path)
    assert usage.inodes == 2  # the root and "keep"
    assert usage.size >= 8192
