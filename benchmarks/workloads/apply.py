"""apply: unpacking an image layer built from a real tree of this machine.

The layer tar holds the first few thousand files of the Python standard
library (realistic sizes: many small sources, some large modules). The
figure is the time to apply it as a new base layer and write it back to
disk (``sync``), and the throughput in MB/s of file data. ``returned`` is
the time until ``apply`` returned, before that ``sync``: a store with
``sync=on`` returns only once the layer is on disk, one with ``sync=off``
(the ``overlay-nosync`` column) earlier.
"""

from __future__ import annotations

import os

from ..stats import Metric
from ..targets import Target
from ..tree import TreeTar, build_tree_tar
from ..workload import Context, Timer, Workload


def tree_tar(ctx: Context, files: int, max_bytes: int) -> TreeTar:
    """Return the run's shared layer tar of ``files`` files / ``max_bytes`` bytes."""
    key = f"tree-{files}-{max_bytes}"
    return ctx.shared_input(
        key, lambda: build_tree_tar(ctx.workdir / f"{key}.tar", files, max_bytes)
    )


class ApplyWorkload(Workload):
    """Apply a realistic layer tar (s, MB/s)."""

    name = "apply"
    title = "apply a layer tar of the Python standard library, then sync (s; MB/s of file data)"
    sizes = {
        "quick": {"files": 500, "bytes": 8 << 20},
        "default": {"files": 5000, "bytes": 100 << 20},
        "full": {"files": 5000, "bytes": 100 << 20},
    }

    def metrics(self) -> list[Metric]:
        return [
            Metric("time", "s"),
            Metric("throughput", "MB/s", higher_is_better=True),
            Metric("returned", "s"),
        ]

    def setup(self, target: Target) -> None:
        self.state[target.name] = {
            "tar": tree_tar(self.ctx, self.size["files"], self.size["bytes"])
        }

    def run(self, target: Target) -> dict[str, float]:
        tar: TreeTar = self.state[target.name]["tar"]
        with open(tar.path, "rb") as f, Timer() as t:
            with Timer() as returned:
                name = target.apply(f)
            os.sync()
        target.remove(name)  # the same tar on the same parent would be found, not applied
        return {
            "time": t.seconds,
            "throughput": tar.bytes / t.seconds / 1e6,
            "returned": returned.seconds,
        }


WORKLOAD = ApplyWorkload
