"""Fixtures for the device-mapper tests: leak checks and scratch thin pools.

These tests need root and a kernel with dm-thin; ``scripts/vm-test`` runs
them in a VM when this machine's kernel has no device-mapper.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dmpool import ScratchPool
from layerfs.drivers.devmapper import dmsetup

from layerfs import errors


def _dm_available() -> str | None:
    if os.geteuid() != 0:
        return "needs root (run scripts/vm-test)"
    if not os.path.exists("/dev/mapper/control"):
        return "kernel has no device-mapper (run scripts/vm-test)"
    try:
        if "thin-pool" not in dmsetup.targets():
            subprocess.run(["modprobe", "dm-thin-pool"], check=True, capture_output=True)
    except (subprocess.CalledProcessError, errors.LayerfsError) as exc:
        return f"kernel has no dm-thin-pool: {exc}"
    return None


_REASON = _dm_available()


def _shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep every n-th test when LAYERFS_VM_SHARD is ``i/n`` (scripts/vm-test runs n VMs)."""
    spec = os.environ.get("LAYERFS_VM_SHARD")
    if not spec:
        return
    index, count = (int(part) for part in spec.split("/"))
    keep = [item for k, item in enumerate(items) if k % count == index]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _shard(config, items)
    if _REASON is None:
        return
    if os.environ.get("LAYERFS_REQUIRE_DM") == "1":
        # Set by scripts/vm-run in its guest, whose kernel is chosen for dm-thin:
        # a skip there would hide a broken VM setup.
        raise pytest.UsageError(f"device-mapper tests cannot run in the test VM: {_REASON}")
    for item in items:
        if "tests/vm" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=_REASON))


def _loops() -> set[str]:
    out = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return {line.split(":")[0] for line in out.splitlines() if line.strip()}


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Every test leaves dm devices and loop devices as it found them."""
    if _REASON is not None:
        yield
        return
    devices, loops = set(dmsetup.ls()), _loops()
    yield
    leaked = set(dmsetup.ls()) - devices
    leaked_loops = _loops() - loops
    for name in sorted(leaked, reverse=True):
        with contextlib.suppress(errors.LayerfsError):
            dmsetup.remove(name, deferred=False)
    for dev in leaked_loops:
        subprocess.run(["losetup", "-d", dev], capture_output=True)
    assert not leaked, f"dm devices leaked: {sorted(leaked)}"
    assert not leaked_loops, f"loop devices leaked: {sorted(leaked_loops)}"


@pytest.fixture
def scratch_pool(tmp_path: Path) -> Iterator[ScratchPool]:
    """A 256 MiB thin pool named after the test's temporary directory."""
    pool = ScratchPool(
        tmp_path / "pool-files", f"lfstest-{abs(hash(str(tmp_path))) % 10**8}", 256 << 20
    )
    try:
        yield pool
    finally:
        pool.close()
