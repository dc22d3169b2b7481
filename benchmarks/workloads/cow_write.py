"""cow-write: the first small write into file data that a committed parent shares.

The parent layer holds one 1 MiB file. Each round prepares and mounts a
new snapshot on it (untimed), then:

- ``open``: opens the file read-write. Union filesystems copy the whole
  file up here (overlay, fuse, fuse-overlayfs); the others only open it.
- ``first write``: writes 4 KiB at N offsets 64 KiB apart, each followed
  by ``fdatasync`` (which flushes the data and the device cache, and on
  dm-thin commits the pool's metadata); the median of the N. On
  ``devmapper`` each lands in a pool block the parent shares, so dm-thin
  copies the whole block (64 KiB by default) first; on ``copy`` over a
  reflinking filesystem the filesystem unshares an extent.
- ``second write``: the same writes again, now into private data.

The ratio of first to second write is the point; absolute times depend
on the disk (and in a VM on its emulation).
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..workload import Timer, Workload, write_file

FILE = 1 << 20
WRITE = 4096
STEP = 64 << 10


class CowWriteWorkload(Workload):
    """open, first and second 4 KiB write + fdatasync into shared file data (ms)."""

    name = "cow-write"
    title = (
        "4 KiB write + fdatasync into a 1 MiB file a parent layer shares: open read-write, "
        "first write, second write (ms, lower is better)"
    )
    sizes = {
        "quick": {"writes": 4},
        "default": {"writes": 8},
        "full": {"writes": 16},
    }

    def metrics(self) -> list[Metric]:
        return [
            Metric("open", "ms"),
            Metric("first write", "ms"),
            Metric("second write", "ms"),
        ]

    def setup(self, target: Target) -> None:
        def populate(path: Path) -> None:
            write_file(path / "shared", FILE, seed=3)

        self.state[target.name] = {"layer": target.layer(populate)}

    def run(self, target: Target) -> dict[str, float]:
        offsets = [k * STEP % FILE for k in range(self.size["writes"])]
        block = os.urandom(WRITE)
        key = target.new_key("cow")
        target.prepare(key, self.state[target.name]["layer"])
        try:
            path = target.mount(key) / "shared"
            with Timer() as opened:
                fd = os.open(path, os.O_RDWR)
            try:
                first = [_write(fd, block, off) for off in offsets]
                second = [_write(fd, block, off) for off in offsets]
            finally:
                os.close(fd)
        finally:
            target.remove(key)
        return {
            "open": opened.seconds * 1000,
            "first write": statistics.median(first),
            "second write": statistics.median(second),
        }


def _write(fd: int, block: bytes, offset: int) -> float:
    """pwrite ``block`` at ``offset`` and fdatasync; return the milliseconds taken."""
    with Timer() as t:
        os.pwrite(fd, block, offset)
        os.fdatasync(fd)
    return t.seconds * 1000


WORKLOAD = CowWriteWorkload
