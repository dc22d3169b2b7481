"""diff: exporting a layer in which many files changed.

A base layer holds many small files (as many as the largest N, or more
at ``--full``); a layer on it rewrites N of them. The figure is the time
to export that layer as an OCI layer tar (read to the end), in seconds.
``native`` tars the same N files of a plain directory. ``overlay`` and
``fuse`` read the change from the layer's own upper directory; ``copy``
and ``devmapper`` compare the whole tree with its parent's, so the size of
the base shows in their figures only.
"""

from __future__ import annotations

from pathlib import Path

from ..stats import Metric
from ..targets import NativeTarget, Target, tar_directory
from ..workload import Timer, Workload

FILE_SIZE = 2048


def _names(n: int) -> list[str]:
    return [f"d{i // 1000}/f{i}" for i in range(n)]


class DiffWorkload(Workload):
    """Export a layer with N changed files (s)."""

    name = "diff"
    title = "export a layer with N changed files as a layer tar (s, lower is better)"
    sizes = {
        "quick": {"changed": (100, 300), "base": 300},
        "default": {"changed": (1000, 10000), "base": 10000},
        "full": {"changed": (1000, 10000), "base": 50000},
    }

    def metrics(self) -> list[Metric]:
        return [Metric(f"{n} changed", "s") for n in self.size["changed"]]

    def setup(self, target: Target) -> None:
        total = max(self.size.get("base", 0), *self.size["changed"])

        def base(path: Path) -> None:
            for rel in _names(total):
                p = path / rel
                p.parent.mkdir(exist_ok=True)
                p.write_bytes(b"a" * FILE_SIZE)

        layer = target.layer(base)
        layers: dict[int, str] = {}
        for n in self.size["changed"]:

            def change(path: Path, n: int = n) -> None:
                for rel in _names(n):
                    (path / rel).parent.mkdir(exist_ok=True)
                    (path / rel).write_bytes(b"b" * FILE_SIZE)

            if isinstance(target, NativeTarget):
                # No layers on a plain directory: the changed files are tarred in place.
                layers[n] = layer
            else:
                layers[n] = target.layer(change, layer)
        self.state[target.name] = {"layers": layers}

    def run(self, target: Target) -> dict[str, float]:
        out: dict[str, float] = {}
        for n, layer in self.state[target.name]["layers"].items():
            with Timer() as t:
                if isinstance(target, NativeTarget):
                    stream = tar_directory(target.path_of(layer), _names(n))
                else:
                    stream = target.export(layer)
                size = sum(len(chunk) for chunk in stream)
            if size == 0:
                raise RuntimeError(f"export of {layer} on {target.name} was empty")
            out[f"{n} changed"] = t.seconds
        return out


WORKLOAD = DiffWorkload
