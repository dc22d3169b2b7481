"""The bench workloads that compare devmapper with the other drivers, on a devmapper column.

``cow-write`` (first write into a block the parent shares) and ``space``
(disk per committed layer) are the figures where dm-thin differs most
from a union filesystem; this runs both at tiny sizes on ``native`` and
``devmapper`` columns built the way ``layerfs bench`` builds them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from layerfs.benchmarks import cleanup as cl
from layerfs.benchmarks.columns import build, spec
from layerfs.benchmarks.runner import NoProgress, run_workload
from layerfs.benchmarks.scratch import make_scratch_fs
from layerfs.benchmarks.targets import Target
from layerfs.benchmarks.workload import Context, drop_caches
from layerfs.benchmarks.workloads import load

TINY = {
    "cow-write": {"writes": 2},
    "space": {"files": 4, "file": 16 << 10, "write": 1 << 20, "layers": 2},
}
POOL_BLOCK_KIB = 64  # the driver's default data block size


@pytest.fixture
def columns(tmp_path: Path) -> Iterator[list[Target]]:
    workdir = tmp_path / "bench"
    workdir.mkdir()
    reg = cl.Cleanup(workdir)
    try:
        targets = []
        for name in ("native", "devmapper"):
            fs = make_scratch_fs(reg, workdir, name, "ext4", 1 << 30)
            targets.append(build(spec(name), fs, reg))
        yield targets
    finally:
        assert reg.run_all() == []
        assert cl.mounts_below(workdir) == []
        assert cl.loops_below(workdir) == []


def test_cow_write_and_space_figures_on_devmapper(columns: list[Target], tmp_path: Path) -> None:
    by: dict[tuple[str, str], float] = {}
    for name, size in TINY.items():
        wl = load(name)(Context("quick", tmp_path, drop_caches))
        wl.size.update(size)
        results = run_workload(wl, columns, warmup=0, runs=1, progress=NoProgress())
        assert {r.metric for r in results} == {m.name for m in wl.metrics()}
        for r in results:
            assert r.note == "", f"{name} on {r.driver}: {r.note}"
            assert r.median is not None and math.isfinite(r.median) and r.median >= 0
            by[(r.driver, r.metric)] = r.median
    assert by[("devmapper", "first write")] > 0
    assert by[("devmapper", "second write")] > 0
    # A layer's new file lands in pool blocks the parent shares: each one is
    # provisioned whole, so a layer costs at least one pool block.
    assert by[("devmapper", "per layer")] >= POOL_BLOCK_KIB
    for t in columns:
        assert not t._made
