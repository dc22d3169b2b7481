"""density: page cache used when many containers read the same image data.

N snapshots of one image each read the same file (untimed setup mounts
them all). With a cold cache, the file is read through every snapshot
and the growth of ``Cached`` in /proc/meminfo is taken. Figures, in MiB:
the growth for one snapshot, and the extra growth per additional
snapshot at N. Sharing one page cache (overlay, FUSE passthrough,
native) keeps the latter near zero; private copies (copy, dm-thin, FUSE
without passthrough) pay the whole file again per snapshot.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..workload import Workload, write_file

CHUNK = 1 << 20


def cached_bytes() -> int:
    """Return ``Cached`` from /proc/meminfo, in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Cached:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no Cached line")


class DensityWorkload(Workload):
    """Page-cache growth per extra snapshot reading the same data (MiB)."""

    name = "density"
    title = "page-cache growth when N snapshots read the same file (MiB, lower is better)"
    warmup = False
    max_runs = {"default": 2, "full": 3}
    sizes = {
        "quick": {"counts": (1, 3), "file": 8 << 20},
        "default": {"counts": (1, 10, 25), "file": 64 << 20},
        "full": {"counts": (1, 10, 50), "file": 256 << 20},
    }

    def metrics(self) -> list[Metric]:
        counts = self.size["counts"]
        out = [Metric("1 snapshot", "MiB")]
        out += [Metric(f"per extra, {n}", "MiB", ratio=False) for n in counts if n > 1]
        return out

    def setup(self, target: Target) -> None:
        size = self.size["file"]
        self.state[target.name] = {"layer": target.layer(lambda p: write_file(p / "data", size, 7))}

    def run(self, target: Target) -> dict[str, float]:
        layer = self.state[target.name]["layer"]
        growth: dict[int, float] = {}
        for n in self.size["counts"]:
            keys = [target.new_key("dense") for _ in range(n)]
            roots: list[Path] = []
            try:
                for key in keys:
                    target.prepare(key, layer)
                    roots.append(target.mount(key))
                self.ctx.drop_caches()
                before = cached_bytes()
                for root in roots:
                    _read(root / "data")
                growth[n] = (cached_bytes() - before) / (1 << 20)
            finally:
                for key in keys:
                    if target.holds(key):
                        target.remove(key)
        out = {"1 snapshot": growth[1]}
        for n, g in growth.items():
            if n > 1:
                out[f"per extra, {n}"] = (g - growth[1]) / (n - 1)
        return out


def _read(path: Path) -> None:
    buf = bytearray(CHUNK)
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.readv(fd, [buf]) > 0:
            pass
    finally:
        os.close(fd)


WORKLOAD = DensityWorkload
