"""Small devmapper stores for VM tests: open one, write and read a file through a mount."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import layerfs
from layerfs import errors

SMALL = {"data_size": "512M", "base_size": "64M", "min_free_percent": "0", "udev": "off"}


@contextlib.contextmanager
def opened(root: Path, **options: str) -> Iterator[layerfs.Store]:
    """A devmapper store at ``root``; on exit every mount a failed test left goes, then it closes."""
    store = layerfs.Store(root, driver="devmapper", options=options)
    try:
        yield store
    finally:
        for info in list(store.walk()):
            with contextlib.suppress(errors.LayerfsError):
                while True:
                    store.unmount(info.name)
        store.close()


def write(store: layerfs.Store, key: str, name: str, data: bytes) -> None:
    """Write ``data`` to ``name`` in snapshot ``key`` and make it durable."""
    with store.mounted(key) as root:
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def read(store: layerfs.Store, key: str, name: str) -> bytes:
    """The contents of ``name`` in snapshot ``key``."""
    with store.mounted(key) as root:
        with open(os.path.join(root, name), "rb") as f:
            return f.read()
