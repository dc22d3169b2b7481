"""Fixtures for the container tier: filesystems overlay cannot use, and a /dev without some nodes.

scripts/container-test runs these tests inside a privileged container,
where ``/`` is the container's own overlay. As root on a host they run
too: an overlay mounted under ``tmp_path`` then stands in for the
container's root filesystem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from envtools import IN_CONTAINER, fs_name


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (mounts, loop devices, device nodes)")
    for item in items:
        if "container" in str(item.fspath):
            item.add_marker(skip)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=60)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=60)


@pytest.fixture
def container_root_dir(tmp_path: Path) -> Iterator[Path]:
    """An empty directory on the container's own root filesystem (an overlay).

    In the tier that is a directory on ``/`` itself; on a host, a directory
    on an overlay mounted for the test.
    """
    if fs_name(Path("/")) == "overlay":
        where = Path(tempfile.mkdtemp(prefix="layerfs-test-", dir="/var/lib"))
        try:
            assert fs_name(where) == "overlay", f"{where} should be on the root overlay"
            yield where / "store"
        finally:
            shutil.rmtree(where, ignore_errors=True)
        return
    assert not IN_CONTAINER, "the tier's container should have an overlay as its root"
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    _mount(
        "-t",
        "overlay",
        "overlay",
        "-o",
        f"lowerdir={tmp_path / 'lower'},upperdir={tmp_path / 'upper'},workdir={tmp_path / 'work'}",
        str(tmp_path / "merged"),
    )
    try:
        yield tmp_path / "merged" / "store"
    finally:
        _umount(tmp_path / "merged")


@pytest.fixture
def no_dtype_fs(tmp_path: Path) -> Iterator[Path]:
    """A loop-mounted ext4 without the filetype feature: readdir gives no d_type."""
    image, mnt = tmp_path / "nodtype.img", tmp_path / "nodtype"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^filetype", str(image)], check=True)
    _mount("-o", "loop", str(image), str(mnt))
    try:
        yield mnt
    finally:
        _umount(mnt)


@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    """A ramfs: typed directory entries, but no xattrs at all."""
    mnt = tmp_path / "ramfs"
    mnt.mkdir()
    _mount("-t", "ramfs", "layerfs-test", str(mnt))
    try:
        yield mnt
    finally:
        _umount(mnt)
