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

    def snapshotter(self, driver: str) -> str:
        """containerd's name of the layerfs snapshotter for ``driver``."""
        return f"layerfs-{driver}"
