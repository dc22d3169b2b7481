"""layerfs: container image layers and copy-on-write snapshots through pluggable drivers.

Layering of the package, bottom up (a module imports only from below):

- ``errors``: the error classes;
- ``_sys``: raw syscalls and the one copy, xattr copy and tree remover; ``_run``:
  external commands; ``_mounting``: mounting anything shaped like a ``Mount`` (so
  ``Mount.mount`` can call down to it);
- ``_types``: the vocabulary (Kind, Info, Usage, Mount, Change);
- ``_overlayfmt.marks``, ``_overlayfmt.lower``: overlay's on-disk format (whiteouts,
  opaque dirs, reading a stack of layers);
- ``driver``: the storage-driver interface; ``_registry``: finding drivers;
  ``_overlayfmt.layout``, ``.filesystem``: the driver home shared by ``overlay`` and
  ``fuse``, and what its filesystem must offer;
- ``_metadata``, ``_records``: the SQLite database and snapshot records;
- ``_streams``, ``_tarread``, ``_scoped``, ``_targets``, ``_apply``, ``_diff``, ``_export``,
  ``_fstree``: layer tars and trees (``_apply`` holds the one set of
  OCI layer rules, ``_targets`` the full-tree and overlay-diff-dir writers);
- ``_context``: a store's driver, database and locks, with the record-and-storage
  steps that several modules share; ``_layers`` (apply, export, changes) and
  ``_recovery`` (crash repair, ``check``) work through it;
- ``_store``: ``Store``, the snapshot API tying it all together;
- ``snapshotter``: ``layerfs serve``, containerd's snapshots service over a ``Store``;
- ``cli``: the ``layerfs`` command.

Built-in drivers live in ``layerfs.drivers.<name>``; ``layerfs bench`` in
``layerfs.benchmarks``.
"""

from typing import TYPE_CHECKING, Any

from . import errors as errors
from ._types import Change as Change
from ._types import ChangeKind as ChangeKind
from ._types import Info as Info
from ._types import Kind as Kind
from ._types import Mount as Mount
from ._types import Usage as Usage

if TYPE_CHECKING:
    from ._registry import available_drivers as available_drivers
    from ._store import Store as Store
    from ._store import default_root as default_root
    from ._store import open_store as open
    from .driver import Driver as Driver

# The store and the driver registry load on first use, so that small
# processes importing one corner of the package (a FUSE server, a bench
# workload) start fast.
_LAZY = {
    "Store": ("._store", "Store"),
    "open": ("._store", "open_store"),
    "default_root": ("._store", "default_root"),
    "available_drivers": ("._registry", "available_drivers"),
    "Driver": (".driver", "Driver"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module, __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'layerfs' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Store",
    "open",
    "Kind",
    "Info",
    "Usage",
    "Mount",
    "Change",
    "ChangeKind",
    "Driver",
    "errors",
    "available_drivers",
    "default_root",
]
