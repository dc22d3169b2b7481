"""untar: extracting a tree of many small files into a mounted snapshot.

What a container does when it unpacks an archive (or an image build's
``RUN tar``): every file is created and written through the snapshot's
mount, so a userspace union filesystem serves each request. The tar is
the ``apply`` workload's (the Python standard library). Each round
prepares and mounts a new snapshot on a small base layer (untimed), then
runs ``tar -xf`` into a new directory in it; figures: the time until
``tar`` returned, and until a ``sync`` after it returned (s).
``native`` extracts into a new directory of a plain filesystem.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..tree import TreeTar
from ..workload import Timer, Workload
from .apply import tree_tar


class UntarWorkload(Workload):
    """tar -xf of a many-file tree into a mounted snapshot (s)."""

    name = "untar"
    title = "tar -xf of the Python standard library into a mounted snapshot, then sync (s)"
    sizes = {
        "quick": {"files": 500, "bytes": 8 << 20},
        "default": {"files": 5000, "bytes": 100 << 20},
        "full": {"files": 5000, "bytes": 100 << 20},
    }

    def metrics(self) -> list[Metric]:
        return [Metric("extract", "s"), Metric("extract+sync", "s")]

    def setup(self, target: Target) -> None:
        def populate(path: Path) -> None:
            (path / "etc").mkdir()
            (path / "etc" / "hostname").write_bytes(b"bench\n")

        tar: TreeTar = tree_tar(self.ctx, self.size["files"], self.size["bytes"])
        self.state[target.name] = {"layer": target.layer(populate), "tar": tar}

    def run(self, target: Target) -> dict[str, float]:
        st = self.state[target.name]
        key = target.new_key("untar")
        target.prepare(key, st["layer"])
        try:
            dest = target.mount(key) / key
            dest.mkdir()
            with Timer() as total:
                with Timer() as extract:
                    proc = subprocess.run(
                        ["tar", "-xf", str(st["tar"].path), "-C", str(dest)],
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                os.sync()
            if proc.returncode != 0:
                raise RuntimeError(f"tar -xf failed: {proc.stderr.strip()}")
            if target.native:
                shutil.rmtree(dest)  # the native "snapshot" is the layer's own directory
        finally:
            target.remove(key)
        return {"extract": extract.seconds, "extract+sync": total.seconds}


WORKLOAD = UntarWorkload
