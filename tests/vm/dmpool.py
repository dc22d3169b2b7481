"""A scratch thin pool for tests, made with plain dmsetup like an operator would."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from layerfs.drivers.devmapper import dmsetup

from layerfs import errors


class ScratchPool:
    """A thin pool on sparse loop files, made with plain dmsetup like an operator would."""

    def __init__(self, where: Path, name: str, data_size: int, meta_size: int = 8 << 20) -> None:
        self.name = name
        self.loops: list[str] = []
        where.mkdir(parents=True, exist_ok=True)
        files = []
        for fname, size in (("data", data_size), ("meta", meta_size)):
            path = where / f"{name}.{fname}"
            with open(path, "wb") as f:
                f.truncate(size)
            files.append(path)
        for path in files:
            out = subprocess.run(
                ["losetup", "-f", "--show", str(path)], check=True, capture_output=True, text=True
            )
            self.loops.append(out.stdout.strip())
        data_loop, meta_loop = self.loops
        table = f"0 {data_size // 512} thin-pool {meta_loop} {data_loop} 128 0 1 error_if_no_space"
        dmsetup.create(name, table)
        dmsetup.mknodes(name)

    def close(self) -> None:
        """Remove the pool and detach its loops."""
        with contextlib.suppress(errors.LayerfsError):
            dmsetup.remove(name=self.name, deferred=False)
        for dev in self.loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True)
