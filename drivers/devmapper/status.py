"""Parsing the status lines of ``thin-pool`` and ``thin`` targets.

A healthy pool reports (after ``start length thin-pool``)::

    <transaction id> <used meta>/<total meta> <used data>/<total data>
    <held metadata root|-> ro|rw|out_of_data_space
    [no_]discard_passdown error|queue_if_no_space needs_check|-
    <metadata low watermark>

Metadata counts are in 4 KiB metadata blocks, data counts in pool data
blocks. A failed pool reports ``Fail`` (or ``Error``) instead of all this.
A thin device reports ``<mapped sectors> <highest mapped sector>``, a
``-`` for the second field when nothing is mapped, or ``Fail``.
"""

from __future__ import annotations

import dataclasses

from layerfs import errors

__all__ = ["PoolStatus", "ThinStatus", "parse_pool", "parse_thin"]


@dataclasses.dataclass(frozen=True)
class PoolStatus:
    """One thin-pool status line.

    Attributes:
        transaction_id: the pool's user transaction id.
        meta_used, meta_total: metadata blocks (4 KiB each).
        data_used, data_total: data blocks (the pool's block size each).
        mode: ``rw``, ``ro`` or ``out_of_data_space``; ``Fail`` when failed.
        needs_check: the metadata must be checked with ``thin_check``.
        error_if_no_space: writers get ENOSPC instead of waiting when full.
        held_root: a metadata snapshot is held (its root block), else None.
    """

    transaction_id: int
    meta_used: int
    meta_total: int
    data_used: int
    data_total: int
    mode: str
    needs_check: bool = False
    error_if_no_space: bool = False
    held_root: int | None = None

    @property
    def failed(self) -> bool:
        """The pool reported ``Fail`` or ``Error``."""
        return self.mode in ("Fail", "Error")

    def data_free_percent(self) -> float:
        """Free data blocks as a percentage of all data blocks."""
        return (
            100.0 * (self.data_total - self.data_used) / self.data_total if self.data_total else 0.0
        )

    def meta_free_percent(self) -> float:
        """Free metadata blocks as a percentage of all metadata blocks."""
        return (
            100.0 * (self.meta_total - self.meta_used) / self.meta_total if self.meta_total else 0.0
        )

    def as_dict(self) -> dict[str, object]:
        """The fields as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ThinStatus:
    """One thin device status line.

    Attributes:
        mapped_sectors: 512-byte sectors mapped (own and shared blocks).
        highest_sector: the highest mapped sector, or None when nothing is.
        failed: the device reported ``Fail``.
    """

    mapped_sectors: int
    highest_sector: int | None
    failed: bool = False


def _fields(line: str, target: str, name: str) -> list[str]:
    parts = line.split()
    if len(parts) < 3 or parts[2] != target:
        raise errors.InvalidArgument(
            f"device {name} is not a {target} (status: {line!r}); name a {target} device"
        )
    return parts[3:]


def _ratio(text: str, name: str) -> tuple[int, int]:
    used, _, total = text.partition("/")
    try:
        return int(used), int(total)
    except ValueError:
        raise errors.Corrupt(f"cannot read usage {text!r} in the status of pool {name}") from None


def parse_pool(line: str, name: str) -> PoolStatus:
    """Parse the status line of thin-pool ``name``.

    Raises:
        errors.InvalidArgument: ``name`` is not a thin-pool.
        errors.Corrupt: the line does not have the documented shape.
    """
    f = _fields(line, "thin-pool", name)
    if not f:
        raise errors.Corrupt(f"empty status for pool {name}")
    if f[0] in ("Fail", "Error"):
        return PoolStatus(-1, 0, 0, 0, 0, f[0])
    if len(f) < 5:
        raise errors.Corrupt(f"short status for pool {name}: {line!r}")
    try:
        tid = int(f[0])
    except ValueError:
        raise errors.Corrupt(f"bad transaction id in the status of pool {name}: {line!r}") from None
    meta_used, meta_total = _ratio(f[1], name)
    data_used, data_total = _ratio(f[2], name)
    held = None if f[3] == "-" else int(f[3])
    rest = f[5:]
    return PoolStatus(
        transaction_id=tid,
        meta_used=meta_used,
        meta_total=meta_total,
        data_used=data_used,
        data_total=data_total,
        mode=f[4],
        needs_check="needs_check" in rest,
        error_if_no_space="error_if_no_space" in rest,
        held_root=held,
    )


def parse_thin(line: str, name: str) -> ThinStatus:
    """Parse the status line of thin device ``name``.

    Raises:
        errors.InvalidArgument: ``name`` is not a thin device.
    """
    f = _fields(line, "thin", name)
    if not f or f[0] in ("Fail", "Error"):
        return ThinStatus(0, None, failed=True)
    mapped = int(f[0]) if f[0].isdigit() else 0
    highest = int(f[1]) if len(f) > 1 and f[1].isdigit() else None
    return ThinStatus(mapped, highest)
