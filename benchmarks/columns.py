"""Which columns a bench run has, why a missing one is missing, and how each is built.

A column is ``native`` (plain directories), a store driver with options
(``copy``, ``overlay``, ``fuse``, ``fuse-nopt``, ``devmapper``) or a peer
program mounting an overlay store's layers (``fuse-overlayfs``). Opt-in
columns run only when named with ``--driver``: ``overlay-nosync`` is
overlay with the store's ``sync=off``, to measure what durability costs.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from layerfs import errors

from .cleanup import Cleanup
from .scratch import ScratchFs
from .targets import NativeTarget, PeerTarget, StoreTarget, Target

PEER_PROGRAM = "fuse-overlayfs"


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """How to build one column.

    Attributes:
        name: the column name in tables and JSON.
        driver: the store driver it needs (None for ``native``).
        options: driver options.
        peer: a program that mounts an overlay store's layers, or None.
        about: one line for the report.
        opt_in: run only when asked for by name (not in the default set).
    """

    name: str
    driver: str | None = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)
    peer: str | None = None
    about: str = ""
    opt_in: bool = False


COLUMNS: tuple[ColumnSpec, ...] = (
    ColumnSpec("native", about="plain directory on the same filesystem type"),
    ColumnSpec("copy", "copy", about="full copies (reflink where the fs has it)"),
    ColumnSpec("overlay", "overlay", about="kernel overlayfs"),
    ColumnSpec("fuse", "fuse", about="layerfs FUSE union fs, passthrough when offered"),
    ColumnSpec("fuse-nopt", "fuse", {"passthrough": "off"}, about="layerfs FUSE, passthrough off"),
    ColumnSpec("devmapper", "devmapper", about="dm-thin snapshots on a loop-backed pool"),
    ColumnSpec(
        PEER_PROGRAM, "overlay", peer=PEER_PROGRAM, about="fuse-overlayfs on overlay's layers"
    ),
    ColumnSpec(
        "overlay-nosync",
        "overlay",
        {"sync": "off"},
        about="overlay, store option sync=off (no syncs before commit)",
        opt_in=True,
    ),
)

#: The columns a run has by default.
COLUMN_NAMES = tuple(c.name for c in COLUMNS if not c.opt_in)


def spec(name: str) -> ColumnSpec:
    """Return the column named ``name``.

    Raises:
        errors.InvalidArgument: no such column.
    """
    for c in COLUMNS:
        if c.name == name:
            return c
    raise errors.InvalidArgument(
        f"--driver {name!r} is not a bench column; choose from {', '.join(c.name for c in COLUMNS)}"
    )


def kernel_version() -> tuple[int, int]:
    """Return the running kernel's (major, minor)."""
    release = os.uname().release
    parts = release.split(".")
    try:
        return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)
    except (IndexError, ValueError):
        return (0, 0)


def fuse_passthrough_offered() -> bool:
    """True when the kernel offers FUSE passthrough (Linux 6.9 added FUSE_PASSTHROUGH)."""
    return kernel_version() >= (6, 9) and os.path.exists("/dev/fuse")


def dm_thin_missing() -> str | None:
    """Say why dm-thin cannot be used here, or None when it can."""
    if not os.path.exists("/dev/mapper/control"):
        return "kernel has no device-mapper (/dev/mapper/control missing)"
    if shutil.which("dmsetup") is None:
        return "dmsetup is not installed"
    return None


def driver_reasons(root: Path) -> dict[str, str | None]:
    """Return store driver name -> None if usable, else why not.

    Uses ``layerfs.available_drivers()`` when the core has it, else loads
    each driver's entry point and asks its ``unavailable_reason``.
    """
    import layerfs

    probe = getattr(layerfs, "available_drivers", None)
    if probe is not None:
        try:
            return dict(probe(root))
        except Exception:  # noqa: BLE001 - one broken driver: probe them one by one
            pass
    from importlib.metadata import entry_points

    out: dict[str, str | None] = {}
    for ep in entry_points(group="layerfs.drivers"):
        try:
            cls = ep.load()
            out[ep.name] = cls.unavailable_reason(root)
        except Exception as exc:  # noqa: BLE001
            out[ep.name] = f"driver not ready ({type(exc).__name__}: {exc})"
    return out


def missing_reason(c: ColumnSpec, drivers: Mapping[str, str | None]) -> str | None:
    """Say why column ``c`` cannot run here, or None when it can."""
    if c.driver is not None:
        if c.driver not in drivers:
            return f"driver {c.driver!r} is not installed"
        if drivers[c.driver]:
            return str(drivers[c.driver])
    if c.name == "fuse-nopt" and not fuse_passthrough_offered():
        return "kernel has no FUSE passthrough, so the fuse column already runs without it"
    if c.driver == "devmapper":
        why = dm_thin_missing()
        if why:
            return why
    if c.peer is not None and shutil.which(c.peer) is None:
        return f"{c.peer} is not installed (Debian package {c.peer})"
    return None


def build(c: ColumnSpec, fs: ScratchFs, cleanup: Cleanup) -> Target:
    """Create the column's target on its scratch filesystem.

    Args:
        c: the column.
        fs: its scratch filesystem.
        cleanup: the run's cleanup registry.

    Raises:
        errors.LayerfsError: the store could not be opened.
    """
    if c.driver is None:
        return NativeTarget(c.name, fs, cleanup)
    options = dict(c.options)
    if c.driver == "devmapper":
        options.update(devmapper_pool_options(fs))
    store = StoreTarget(c.name, fs, cleanup, c.driver, options)
    if c.peer is not None:
        return PeerTarget(c.name, store, c.peer)
    return store


def devmapper_pool_options(fs: ScratchFs) -> dict[str, str]:
    """Return devmapper driver options for a loop-backed pool made for this run.

    With neither ``pool_name`` nor block devices, the driver builds its
    pool on sparse loop files in its home, which is on the column's
    scratch filesystem; the cleanup sweep finds the pool through them.
    Half of the scratch image goes to the pool's data.
    """
    return {"data_size": str(fs.image.stat().st_size // 2)}
