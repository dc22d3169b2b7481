"""The ``containers`` bench workload on the native and copy columns, busybox only."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from layerfs.benchmarks import cleanup as cl
from layerfs.benchmarks.columns import COLUMNS, build
from layerfs.benchmarks.runner import NoProgress, run_workload
from layerfs.benchmarks.scratch import make_scratch_fs
from layerfs.benchmarks.targets import Target
from layerfs.benchmarks.workload import Context, drop_caches
from layerfs.benchmarks.workloads import load


@pytest.fixture
def columns(tmp_path: Path) -> Iterator[dict[str, Target]]:
    workdir = tmp_path / "bench"
    workdir.mkdir()
    reg = cl.Cleanup(workdir)
    try:
        targets = {}
        for spec in COLUMNS:
            if spec.name in ("native", "copy"):
                fs = make_scratch_fs(reg, workdir, spec.name, "ext4", 2 << 30)
                targets[spec.name] = build(spec, fs, reg)
        yield targets
    finally:
        assert reg.run_all() == []
        assert cl.mounts_below(workdir) == []


def test_containers_workload_figures(columns: dict[str, Target], tmp_path: Path) -> None:
    wl = load("containers")(Context("quick", tmp_path, drop_caches))
    assert wl.size["images"] == ("busybox",)
    results = run_workload(wl, [columns["native"], columns["copy"]], 0, 1, NoProgress())
    figures = {(r.driver, r.metric): r.median for r in results if r.median is not None}
    for column in ("native", "copy"):
        for metric in ("unpack busybox", "start busybox"):
            value = figures[(column, metric)]
            assert math.isfinite(value) and 0 < value < 120_000, (column, metric, value)
    # layerfs serve's memory on the served column; containerd's builtin native on native.
    assert 10 < figures[("copy", "serve RSS")] < 2048
    assert ("native", "serve RSS") not in figures
    assert figures[("native", "start busybox, containerd native")] > 0
    assert ("copy", "start busybox, containerd native") not in figures
    # Teardown stopped containerd and the server: nothing of theirs is mounted.
    for t in columns.values():
        assert not list((t.fs.mountpoint / "containers" / "containerd").glob("state/*/*/*/rootfs"))
