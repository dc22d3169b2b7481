"""Suite-wide guard: no test may leave a mount, loop device or FUSE server behind."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest


def _mounts() -> set[str]:
    with open("/proc/self/mounts") as f:
        return {line.split()[1] for line in f}


def _loops() -> set[str]:
    try:
        out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line.split(":")[0] for line in out.splitlines() if line}


def _fuse_servers() -> set[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return {
        line.split(None, 1)[0]
        for line in out.splitlines()
        if "layerfs.drivers.fuse" in line
        or "mount.fuse.layerfs" in line
        or "fuse-overlayfs" in line
    }


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """Fail the run if mounts, loop devices or FUSE servers outlive the tests."""
    before = (_mounts(), _loops(), _fuse_servers())
    yield
    after = (_mounts(), _loops(), _fuse_servers())
    leaks = [
        f"{what}: {sorted(now - then)}"
        for what, then, now in zip(
            ("mounts", "loop devices", "fuse servers"), before, after, strict=True
        )
        if now - then
    ]
    assert not leaks, "tests left resources behind: " + "; ".join(leaks)
