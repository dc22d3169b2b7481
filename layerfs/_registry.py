"""Finding drivers by name through the ``layerfs.drivers`` entry-point group.

Nothing is imported until a driver is asked for; a driver whose import
fails (a missing optional dependency) shows up as unavailable with the
reason, instead of breaking every other driver.
"""

from __future__ import annotations

import functools
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from . import errors
from .driver import Driver

GROUP = "layerfs.drivers"

#: The order ``layerfs.open()`` probes when no driver is named.
DEFAULT_ORDER = ("overlay", "fuse", "copy")


@functools.cache
def _entry_points() -> tuple[EntryPoint, ...]:
    # Scanning installed distributions costs tens of milliseconds (seconds on
    # a slow filesystem); the set of installed drivers does not change while
    # a process runs.
    return tuple(entry_points(group=GROUP))


def driver_names() -> list[str]:
    """Names of all registered drivers, sorted."""
    return sorted({ep.name for ep in _entry_points()})


def load(name: str) -> type[Driver]:
    """Import and return the driver class registered as ``name``.

    Raises:
        errors.NotFound: no driver has that name.
        errors.Unsupported: it is registered but cannot be imported here.
    """
    matches = [ep for ep in _entry_points() if ep.name == name]
    if not matches:
        raise errors.NotFound(
            f"no storage driver named {name!r}; installed: {', '.join(driver_names()) or 'none'}"
        )
    try:
        cls = matches[0].load()
    except (ImportError, AttributeError) as exc:
        raise errors.Unsupported(
            f"driver {name!r} cannot be imported ({exc}); install its dependencies"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise errors.Unsupported(f"entry point {name!r} is not a layerfs Driver subclass")
    return cls


def unavailable_reason(name: str, root: Path) -> str | None:
    """Why driver ``name`` cannot serve a store at ``root`` here; None when it can."""
    try:
        cls = load(name)
    except errors.LayerfsError as exc:
        return str(exc)
    try:
        return cls.unavailable_reason(root)
    except Exception as exc:  # a probe must never take the caller down
        return f"probe failed: {exc}"


def available_drivers(root: Path | None = None) -> dict[str, str | None]:
    """Every registered driver with None when usable here, else the reason.

    Args:
        root: where the store would live (probes look at its filesystem);
            defaults to the current directory.
    """
    where = Path(root) if root is not None else Path.cwd()
    return {name: unavailable_reason(name, where) for name in driver_names()}
