"""Eight processes on one store root, per driver: the multi-process workload of
``layerfs.testing.stress`` and every check it makes afterwards.

The numbers (operations, outcomes, Busy and other contention answers, run
time) are printed (``pytest -s``) and written as JSON to
``$LAYERFS_STRESS_JSON`` (a directory) when set.
``LAYERFS_STRESS_OPS`` changes the number of operations per driver (2,000).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from layerfs.drivers.fuse import FuseDriver
from layerfs.drivers.overlay import probe

from layerfs.driver import is_privileged
from layerfs.testing.stress import run_stress

OPS = int(os.environ.get("LAYERFS_STRESS_OPS", "2000"))
PROCESSES = 8


def _unavailable(driver: str) -> str | None:
    if driver == "overlay":
        if not is_privileged():
            return "overlay mounts need root"
        return probe.unavailable_reason(Path(tempfile.gettempdir()))
    if driver == "fuse":
        return FuseDriver.unavailable_reason(Path(tempfile.gettempdir()))
    return None


@pytest.mark.parametrize("driver", ["copy", "overlay", "fuse"])
def test_many_processes_on_one_store(driver: str, tmp_path: Path) -> None:
    reason = _unavailable(driver)
    if reason:
        pytest.skip(f"{driver} unavailable: {reason}")
    report = run_stress(tmp_path / "store", driver, processes=PROCESSES, operations=OPS)
    report.log()
    assert report.operations >= OPS
    assert report.failures == []
    assert report.problems == []
    # The workload must really collide and really succeed, or it proves nothing.
    assert report.outcomes.get("commit:ok", 0) > 0 and report.outcomes.get("apply:ok", 0) > 0
    assert report.outcomes.get("mount_write:ok", 0) > 0
    assert sum(report.contention.values()) > 0
