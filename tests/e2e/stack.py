"""What the end-to-end tests share: image names, the drivers, and a running stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from layerfs.testing.containerd import Containerd, Serve

DRIVERS = ["overlay", "fuse", "copy"]
BUSYBOX = "docker.io/layerfs/busybox:latest"
DEBIAN = "docker.io/layerfs/debian:bookworm"


@dataclass
class Images:
    """OCI image tars built for the session."""

    busybox: Path
    debian: Path
    #: path -> type letter of what a container on the Debian image sees.
    debian_tree: dict[str, str]


@dataclass
class Stack:
    """A containerd with layerfs snapshotters, and the servers behind them."""

    ctd: Containerd
    servers: dict[str, Serve]
    base: Path

    def logs(self, lines: int = 30) -> str:
        """The last lines of containerd's and the servers' logs, for failure messages."""
        out = []
        for path in [self.ctd.base / "containerd.log", *self.base.glob("layerfs/*/*.log")]:
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)

    def snapshotter(self, driver: str) -> str:
        """containerd's name of the layerfs snapshotter for ``driver``."""
        return f"layerfs-{driver}"
