"""Where layerfs is running: device nodes a container may lack, and the facts ``status()`` shows.

Facts relied on:

- A container runtime fills the container's ``/dev`` (a tmpfs) with the
  nodes it was told to: a default container gets null, zero, full, random,
  urandom, tty and ptmx; ``/dev/fuse`` and the loop nodes only when passed
  (``--device``) or when the container is privileged, which copies the
  host's device nodes once, at start.
- A node can exist and still not open: the device cgroup decides (EPERM).
  So the probes open the device, which for ``/dev/fuse`` and
  ``/dev/loop-control`` allocates nothing until a request is written or an
  ioctl is made.
- Inside a container the root filesystem is usually an overlay (containerd's
  and Docker's overlayfs snapshotters), which overlayfs cannot take as upper
  layer and which reserves the ``overlay.*`` xattrs that overlay-format
  stores write; see ``layerfs._overlayfmt.filesystem.format_problem``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ._sys import fsinfo

__all__ = ["device_problem", "fuse_device_problem", "loop_device_problem", "facts"]

FUSE_DEVICE = "/dev/fuse"
LOOP_CONTROL = "/dev/loop-control"


def device_problem(path: str, what: str, remedy: str) -> str | None:
    """Say why the device node ``path`` cannot be used here, or None when it opens.

    Args:
        path: the node, e.g. ``/dev/fuse``.
        what: what the node is for, as a noun phrase ("FUSE").
        remedy: what to do when it is missing or refused.
    """
    if not os.path.exists(path):
        return f"no {path}, so no {what} here: {remedy}"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"{path} does not open ({exc.strerror}): {remedy}"
    os.close(fd)
    return None


def fuse_device_problem() -> str | None:
    """Why FUSE mounts cannot be made here (no usable ``/dev/fuse``), or None."""
    return device_problem(
        FUSE_DEVICE,
        "FUSE",
        "load the fuse module (modprobe fuse); in a container, pass the device "
        "(docker/podman run --device /dev/fuse, or a privileged container)",
    )


def loop_device_problem() -> str | None:
    """Why loop devices cannot be attached here (no usable ``/dev/loop-control``), or None."""
    return device_problem(
        LOOP_CONTROL,
        "loop devices",
        "load the loop module (modprobe loop); in a container, run it privileged "
        "or pass /dev/loop-control and the /dev/loopN nodes",
    )


def facts(root: Path) -> dict[str, object]:
    """What ``status()`` reports about the machine around a store at ``root``.

    Returns:
        ``root_fs`` and ``store_fs`` (filesystem types of ``/`` and of
        ``root``), and ``fuse_device`` / ``loop_devices``: None when usable,
        else the reason.
    """

    def fs(path: Path) -> str:
        try:
            return fsinfo.fs_type_name(fsinfo.fs_type(str(path)))
        except OSError as exc:
            return f"unknown ({exc.strerror})"

    return {
        "root_fs": fs(Path("/")),
        "store_fs": fs(root),
        "fuse_device": fuse_device_problem(),
        "loop_devices": loop_device_problem(),
    }
