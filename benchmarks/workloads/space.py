"""space: disk used by a new snapshot, empty and after 1 MiB is written.

The image is a small tree (4 MiB in 64 files). Figures, from ``statfs``
of the column's scratch filesystem after ``sync``: the growth when one
empty snapshot is prepared, and when 1 MiB is then written into it, in
KiB. ``copy`` pays for the whole image; union filesystems and thin
snapshots pay only for what is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..workload import Workload, write_file


class SpaceWorkload(Workload):
    """Disk used by an empty snapshot and one with 1 MiB written (KiB)."""

    name = "space"
    title = "disk used by a new snapshot, empty and with 1 MiB written (KiB, from statfs)"
    warmup = False
    sizes = {
        "quick": {"files": 64, "file": 64 << 10, "write": 1 << 20},
        "default": {"files": 64, "file": 64 << 10, "write": 1 << 20},
        "full": {"files": 64, "file": 64 << 10, "write": 1 << 20},
    }

    def metrics(self) -> list[Metric]:
        return [Metric("empty snapshot", "KiB"), Metric("1 MiB written", "KiB")]

    def setup(self, target: Target) -> None:
        def populate(path: Path) -> None:
            for i in range(self.size["files"]):
                write_file(path / f"f{i}", self.size["file"], seed=i)

        self.state[target.name] = {"layer": target.layer(populate)}

    def run(self, target: Target) -> dict[str, float]:
        key = target.new_key("space")
        os.sync()
        before = target.fs.used_bytes()
        target.prepare(key, self.state[target.name]["layer"])
        try:
            os.sync()
            empty = target.fs.used_bytes() - before
            root = target.mount(key)
            write_file(root / "written", self.size["write"], seed=99)
            target.unmount(key)
            os.sync()
            written = target.fs.used_bytes() - before
            if target.native:
                # The native "snapshot" is the image directory itself: undo the write.
                (root / "written").unlink()
        finally:
            target.remove(key)
        return {"empty snapshot": empty / 1024, "1 MiB written": written / 1024}


WORKLOAD = SpaceWorkload
