"""copy-up: the first write to a file that lives in a lower layer.

A fresh snapshot is prepared and mounted (untimed), then one byte is
appended to a lower file of each size; the figure is the time of that
open + write + close, in milliseconds. Union filesystems copy the whole
file up here; ``copy`` paid at prepare time instead (see ``prepare``);
``native`` just appends.
"""

from __future__ import annotations

from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..workload import Timer, Workload, write_file


def _label(size: int) -> str:
    return f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"


class CopyUpWorkload(Workload):
    """First 1-byte append to lower files of several sizes (ms)."""

    name = "copy-up"
    title = "first 1-byte append to a lower-layer file (ms, lower is better)"
    sizes = {
        "quick": {"files": (1 << 20, 8 << 20)},
        "default": {"files": (1 << 20, 100 << 20)},
        "full": {"files": (1 << 20, 100 << 20, 1 << 30)},
    }

    def metrics(self) -> list[Metric]:
        return [Metric(f"append {_label(s)}", "ms") for s in self.size["files"]]

    def setup(self, target: Target) -> None:
        def populate(path: Path) -> None:
            for i, size in enumerate(self.size["files"]):
                write_file(path / f"f{size}", size, seed=i)

        self.state[target.name] = {"layer": target.layer(populate)}

    def run(self, target: Target) -> dict[str, float]:
        key = target.new_key("writer")
        target.prepare(key, self.state[target.name]["layer"])
        out: dict[str, float] = {}
        try:
            root = target.mount(key)
            for size in self.size["files"]:
                with Timer() as t:
                    with open(root / f"f{size}", "ab") as f:
                        f.write(b"!")
                out[f"append {_label(size)}"] = t.seconds * 1000
        finally:
            target.remove(key)
        return out


WORKLOAD = CopyUpWorkload
