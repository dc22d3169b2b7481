"""The test VM itself: root, a kernel with dm-thin, a writable /tmp."""

from __future__ import annotations

import os
from pathlib import Path

from layerfs.drivers.devmapper import dmsetup


def test_runs_as_root() -> None:
    assert os.geteuid() == 0


def test_kernel_has_thin_pool_target() -> None:
    assert "thin-pool" in dmsetup.targets()


def test_tmp_is_writable(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    assert (tmp_path / "f").read_text() == "x"
