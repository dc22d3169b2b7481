"""space: disk used by a new snapshot, empty and after 1 MiB is written, and per layer.

The image is a small tree (4 MiB in 64 files). Figures, from ``statfs``
of the column's scratch filesystem after ``sync``: the growth when one
empty snapshot is prepared, and when 1 MiB is then written into it, in
KiB. ``copy`` pays for the whole image; union filesystems and thin
snapshots pay only for what is written.

``per layer`` is what one more committed layer costs when it adds a
single 100-byte file: a chain of such layers is built on the image and
the growth divided by its length. It counts everything the layer makes
on disk: on overlay its directories and link files, on devmapper the
pool blocks the thin device provisions (64 KiB each by default) and the
pool's metadata (its loop files are sparse, so they grow as written).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from ..stats import Metric
from ..targets import NativeTarget, Target
from ..workload import Workload, write_file


class SpaceWorkload(Workload):
    """Disk used by an empty snapshot and one with 1 MiB written (KiB)."""

    name = "space"
    title = (
        "disk used by a new snapshot, empty and with 1 MiB written, and per committed layer "
        "adding one small file (KiB, from statfs)"
    )
    warmup = False
    sizes = {
        "quick": {"files": 64, "file": 64 << 10, "write": 1 << 20, "layers": 4},
        "default": {"files": 64, "file": 64 << 10, "write": 1 << 20, "layers": 16},
        "full": {"files": 64, "file": 64 << 10, "write": 1 << 20, "layers": 16},
    }

    def metrics(self) -> list[Metric]:
        return [
            Metric("empty snapshot", "KiB"),
            Metric("1 MiB written", "KiB"),
            Metric("per layer", "KiB"),
        ]

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
        return {
            "empty snapshot": empty / 1024,
            "1 MiB written": written / 1024,
            "per layer": self._per_layer(target) / 1024,
        }

    def _per_layer(self, target: Target) -> float:
        """Bytes of disk per committed layer adding one small file (chain removed after)."""
        layers = self.size["layers"]
        os.sync()
        before = target.fs.used_bytes()
        made: list[str] = []
        parent = self.state[target.name]["layer"]
        try:
            for i in range(layers):
                parent = target.layer(functools.partial(_small_file, f"layer-{i}"), parent)
                made.append(parent)
            os.sync()
            grown = target.fs.used_bytes() - before
        finally:
            for name in reversed(made):
                target.remove(name)
            if isinstance(target, NativeTarget):
                # Native layers are written into the image's own directory: undo them.
                root = target.path_of(self.state[target.name]["layer"])
                for i in range(layers):
                    (root / f"layer-{i}").unlink(missing_ok=True)
        return grown / layers


def _small_file(name: str, path: Path) -> None:
    (path / name).write_bytes(b"x" * 100)


WORKLOAD = SpaceWorkload
