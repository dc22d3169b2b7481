"""depth: looking up a path that exists only in the bottom layer of a deep chain.

The bottom layer holds a directory of files; every layer above adds one
file of its own elsewhere. After a cold cache, each file of the bottom
directory is looked up once (``lstat``) through a snapshot on top of the
chain; the figure is the mean time per lookup in microseconds. Union
filesystems search the layers top-down, so it grows with depth; ``copy``
and ``native`` hold one flat tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..workload import Timer, Workload

FILES = 100


class DepthWorkload(Workload):
    """Cold lookup of bottom-layer paths through chains of several depths (µs)."""

    name = "depth"
    title = (
        "cold lookup of a path only in the bottom layer of an N-layer chain (µs, lower is better)"
    )
    sizes = {
        "quick": {"chains": (1, 8)},
        "default": {"chains": (1, 32, 128)},
        "full": {"chains": (1, 32, 128, 500)},
    }

    def metrics(self) -> list[Metric]:
        return [Metric(f"{d} layers", "µs") for d in self.size["chains"]]

    def setup(self, target: Target) -> None:
        def populate(path: Path, i: int) -> None:
            if i == 0:
                bottom = path / "bottom" / "deep"
                bottom.mkdir(parents=True)
                for j in range(FILES):
                    (bottom / f"file{j}").write_bytes(b"b")
            else:
                (path / f"layer{i}").write_bytes(b"u")

        layers = target.chain(max(self.size["chains"]), populate)
        roots: dict[int, Path] = {}
        for d in self.size["chains"]:
            key = target.new_key(f"depth{d}")
            target.prepare(key, layers[d - 1])
            roots[d] = target.mount(key)
        self.state[target.name] = {"roots": roots}

    def run(self, target: Target) -> dict[str, float]:
        out: dict[str, float] = {}
        for d, root in self.state[target.name]["roots"].items():
            paths = [root / "bottom" / "deep" / f"file{j}" for j in range(FILES)]
            self.ctx.drop_caches()
            with Timer() as t:
                for p in paths:
                    os.lstat(p)
            out[f"{d} layers"] = t.seconds * 1e6 / FILES
        return out


WORKLOAD = DepthWorkload
