"""Find FUSE mounts in /proc/self/mountinfo without touching the mount points."""

from __future__ import annotations

from layerfs._sys import fuse_dev
from layerfs._sys.mount import unescape

__all__ = ["connection_of"]


def connection_of(target: str) -> str | None:
    """The /sys/fs/fuse/connections name of the FUSE mount on ``target``, or None.

    Reads mountinfo only and never touches ``target`` itself (a stat there
    would block on a hung or not yet answering server). ``target`` must be
    absolute and free of symlinks.
    """
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if unescape(fields[4]) == target:
                fstype = line.split(" - ", 1)[1].split(" ", 1)[0]
                if fstype.startswith("fuse"):
                    major, minor = fields[2].split(":")
                    found = fuse_dev.connection_name(int(major), int(minor))
                else:
                    found = None
    return found
