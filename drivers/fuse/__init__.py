"""The fuse driver: a userspace union filesystem in overlayfs's on-disk format.

Layering (lowest first): ``protocol`` (wire format) and ``session`` (the
``/dev/fuse`` connection) know nothing of layers; ``namei``, ``copy_up``,
``dir``, ``readdir``, ``inode``, ``file`` and ``upper`` implement overlay
semantics on real directories and know nothing of FUSE; ``ops`` maps
requests onto them; ``server``, ``launch``, ``zygote`` (the per-store fork
server) and ``mount_helper`` run it; ``driver`` plugs it into the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .driver import FuseDriver as FuseDriver

__all__ = ["FuseDriver"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the server process (``python -m
    # layerfs.drivers.fuse.server``) must not pay for the store's imports
    # at every mount.
    if name == "FuseDriver":
        from .driver import FuseDriver

        return FuseDriver
    raise AttributeError(name)
