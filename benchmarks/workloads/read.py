"""read: reading a large file that lives in a lower layer, through a snapshot.

Sequential: the whole file in 1 MiB reads, with a cold page cache (after
``drop_caches``) and then warm, in GB/s. Random: 4 KiB reads at random
aligned offsets (the same offsets on every column), cold and warm, in IOPS.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..workload import Timer, Workload, write_file

CHUNK = 1 << 20
BLOCK = 4096


class ReadWorkload(Workload):
    """Sequential (GB/s) and 4 KiB random (IOPS) reads of a lower-layer file."""

    name = "read"
    title = "read a big file from a lower layer: sequential (GB/s) and 4 KiB random (IOPS), cold and warm"
    sizes = {
        "quick": {"file": 32 << 20, "random_cold": 300, "random_warm": 3000},
        "default": {"file": 256 << 20, "random_cold": 3000, "random_warm": 30000},
        "full": {"file": 1 << 30, "random_cold": 20000, "random_warm": 200000},
    }

    def metrics(self) -> list[Metric]:
        return [
            Metric("seq cold", "GB/s", higher_is_better=True),
            Metric("seq warm", "GB/s", higher_is_better=True),
            Metric("rand 4K cold", "IOPS", higher_is_better=True),
            Metric("rand 4K warm", "IOPS", higher_is_better=True),
        ]

    def setup(self, target: Target) -> None:
        size = self.size["file"]
        base = target.layer(lambda p: write_file(p / "big", size, seed=1))
        top = target.layer(_mark, base)
        key = target.new_key("reader")
        target.prepare(key, top)
        path = target.mount(key) / "big"
        self.state[target.name] = {"path": path}

    def run(self, target: Target) -> dict[str, float]:
        path: Path = self.state[target.name]["path"]
        size = self.size["file"]
        rng = random.Random(42)
        blocks = size // BLOCK
        cold_offsets = [rng.randrange(blocks) * BLOCK for _ in range(self.size["random_cold"])]
        warm_offsets = [rng.randrange(blocks) * BLOCK for _ in range(self.size["random_warm"])]
        out: dict[str, float] = {}
        self.ctx.drop_caches()
        out["seq cold"] = size / _seq(path) / 1e9
        out["seq warm"] = size / _seq(path) / 1e9
        self.ctx.drop_caches()
        out["rand 4K cold"] = len(cold_offsets) / _random(path, cold_offsets)
        _seq(path)
        out["rand 4K warm"] = len(warm_offsets) / _random(path, warm_offsets)
        return out


def _mark(path: Path) -> None:
    (path / "other").write_bytes(b"upper layer")


def _seq(path: Path) -> float:
    buf = bytearray(CHUNK)
    fd = os.open(path, os.O_RDONLY)
    try:
        with Timer() as t:
            while os.readv(fd, [buf]) > 0:
                pass
    finally:
        os.close(fd)
    return t.seconds


def _random(path: Path, offsets: list[int]) -> float:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
        with Timer() as t:
            for off in offsets:
                os.pread(fd, BLOCK, off)
    finally:
        os.close(fd)
    return t.seconds


WORKLOAD = ReadWorkload
