"""One module per bench workload; ``load(name)`` returns its ``Workload`` class.

Each module defines exactly one ``Workload`` subclass named ``WORKLOAD``.
"""

from __future__ import annotations

import importlib

from layerfs import errors

from ..workload import Workload

#: Workload name -> module, in the order the report shows them.
NAMES: dict[str, str] = {
    "prepare": "prepare",
    "apply": "apply",
    "read": "read",
    "copy-up": "copy_up",
    "cow-write": "cow_write",
    "metadata": "metadata",
    "untar": "untar",
    "depth": "depth",
    "density": "density",
    "diff": "diff",
    "scale": "scale",
    "store": "store",
    "space": "space",
    "containers": "containers",
    "memory": "memory",
    "fuse-profile": "fuse_profile",
}


def load(name: str) -> type[Workload]:
    """Return the workload class called ``name``.

    Raises:
        errors.InvalidArgument: no such workload.
    """
    try:
        module = NAMES[name]
    except KeyError:
        raise errors.InvalidArgument(
            f"--workload {name!r} is unknown; choose from {', '.join(NAMES)}"
        ) from None
    mod = importlib.import_module(f"{__name__}.{module}")
    cls: type[Workload] = mod.WORKLOAD
    return cls
