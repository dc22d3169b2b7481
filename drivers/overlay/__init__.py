"""The ``overlay`` driver: kernel overlayfs snapshots.

Modules: ``probe`` (kernel and backing-filesystem facts), ``mounting`` (new mount
API and ``mount(2)`` paths), ``driver`` (the ``Driver`` subclass). The on-disk layout, shared with the
``fuse`` driver, is ``layerfs._overlayfmt.layout``.
"""

from .driver import OverlayDriver as OverlayDriver
from .driver import OverlayOptions as OverlayOptions

__all__ = ["OverlayDriver", "OverlayOptions"]
