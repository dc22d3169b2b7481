"""metadata: stat and create/unlink through a snapshot of an applied tree.

The tree is the ``apply`` workload's layer (the standard library). The
figures are: ``lstat`` of every file of the tree with a cold cache and
then warm, and creating then unlinking many empty files in a new
directory, all in operations per second.

create+unlink depends on the directory's size, and not equally for every
column: fuse-overlayfs's cost per unlink grows with the number of names in
the directory (about 2x from 1,000 to 10,000), while the layerfs servers'
stays flat. So ``--quick`` (1,000 names) and the default preset (10,000)
can rank them in opposite orders; compare figures of one preset only.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..tree import TreeTar
from ..workload import Timer, Workload
from .apply import tree_tar


class MetadataWorkload(Workload):
    """lstat of every file (cold, warm) and create+unlink of empty files (ops/s)."""

    name = "metadata"
    title = "lstat every file of the applied tree, cold and warm; create then unlink files (ops/s)"
    sizes = {
        "quick": {"files": 500, "bytes": 8 << 20, "creates": 1000},
        "default": {"files": 5000, "bytes": 100 << 20, "creates": 10000},
        "full": {"files": 5000, "bytes": 100 << 20, "creates": 10000},
    }

    def metrics(self) -> list[Metric]:
        return [
            Metric("stat cold", "ops/s", higher_is_better=True),
            Metric("stat warm", "ops/s", higher_is_better=True),
            Metric("create+unlink", "ops/s", higher_is_better=True),
        ]

    def setup(self, target: Target) -> None:
        tar: TreeTar = tree_tar(self.ctx, self.size["files"], self.size["bytes"])
        with open(tar.path, "rb") as f:
            layer = target.apply(f)
        key = target.new_key("meta")
        target.prepare(key, layer)
        root = target.mount(key)
        self.state[target.name] = {"root": root, "paths": [root / p for p in tar.paths]}

    def run(self, target: Target) -> dict[str, float]:
        st = self.state[target.name]
        paths: list[Path] = st["paths"]
        out: dict[str, float] = {}
        self.ctx.drop_caches()
        out["stat cold"] = len(paths) / _stat_all(paths)
        out["stat warm"] = len(paths) / _stat_all(paths)
        work = st["root"] / target.new_key("create")
        work.mkdir()
        n = self.size["creates"]
        names = [str(work / f"f{i}") for i in range(n)]
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
        with Timer() as t:
            for name in names:
                os.close(os.open(name, flags, 0o644))
            for name in names:
                os.unlink(name)
        work.rmdir()
        out["create+unlink"] = 2 * n / t.seconds
        return out


def _stat_all(paths: list[Path]) -> float:
    with Timer() as t:
        for p in paths:
            os.lstat(p)
    return t.seconds


WORKLOAD = MetadataWorkload
