"""The driver's records in the store's database, and its open dm transaction.

Records (``DriverState`` names):

- ``config``: JSON facts fixed at creation (device name prefix, pool name,
  this store's id range in the pool, filesystem, base size).
- ``tid``: the pool transaction id this store last set.
- ``next``: the next thin id to try.
- ``dev/<snapshot id>``: JSON ``{"thin": id, "size": bytes, "shared": sectors, "inodes": n}``
  for every thin device that exists (``dev/base`` is the mkfs'd base).
- ``pending``: JSON of the one dm transaction in flight, written *before*
  its first message is sent and removed in the same database transaction
  that records its outcome.

Thin ids: each store claims a range of 65,536 ids in the pool by creating
a marker device at the range's first id (EEXIST means another store owns
that range), and allocates only inside it. So an id in this store's range
that exists in the pool is either recorded here or named by ``pending``,
and recovery never has to guess whose device it is.
"""

from __future__ import annotations

import dataclasses
import json

from layerfs.driver import DriverState

__all__ = ["Config", "DeviceRecord", "Pending", "Journal", "RANGE"]

#: Thin ids per store range; 256 ranges cover the 24-bit id space.
RANGE = 1 << 16


@dataclasses.dataclass(frozen=True)
class Config:
    """Facts fixed when the store's driver home was first made."""

    prefix: str
    pool: str
    range_base: int
    fs: str
    base_size: int

    @property
    def marker(self) -> int:
        """The thin id that claims this store's range in the pool."""
        return self.range_base


@dataclasses.dataclass(frozen=True)
class DeviceRecord:
    """One thin device of this store.

    Attributes:
        thin: its thin id in the pool.
        size: its size in bytes.
        shared: mapped sectors it had when made (its parent's); usage
            counts what it mapped beyond that.
        inodes: inodes its filesystem used when last measured, -1 if never.
        mapped: mapped sectors when last measured, -1 if never; for a
            committed snapshot (or the base) this is final, and it is what
            a snapshot of it starts out sharing.
    """

    thin: int
    size: int
    shared: int = 0
    inodes: int = -1
    mapped: int = -1


@dataclasses.dataclass(frozen=True)
class Pending:
    """The dm transaction in flight.

    Attributes:
        op: ``create`` or ``delete``.
        sid: the snapshot id (or ``base``).
        thin: the thin id created or deleted.
        origin: the origin thin id of a snapshot, else None.
        old_tid, new_tid: the pool transaction id before and after.
        size: the new device's size (create).
    """

    op: str
    sid: str
    thin: int
    origin: int | None
    old_tid: int
    new_tid: int
    size: int = 0


class Journal:
    """Typed access to the driver's records.

    Args:
        state: the driver's key-value records in the store's database.
    """

    def __init__(self, state: DriverState) -> None:
        self.state = state

    def config(self) -> Config | None:
        """The creation-time facts, or None for a new store."""
        raw = self.state.get("config")
        return Config(**json.loads(raw)) if raw else None

    def set_config(self, config: Config) -> None:
        """Record the creation-time facts."""
        self.state.put("config", json.dumps(dataclasses.asdict(config)))

    def tid(self) -> int:
        """The pool transaction id this store last set (0 when none)."""
        return int(self.state.get("tid") or 0)

    def device(self, sid: str) -> DeviceRecord | None:
        """The record of snapshot ``sid``'s device, or None."""
        raw = self.state.get(f"dev/{sid}")
        return DeviceRecord(**json.loads(raw)) if raw else None

    def devices(self) -> dict[str, DeviceRecord]:
        """Every recorded device by snapshot id."""
        return {name[4:]: DeviceRecord(**json.loads(raw)) for name, raw in self.state.items("dev/")}

    def put_device(self, sid: str, rec: DeviceRecord) -> None:
        """Record (or update) snapshot ``sid``'s device."""
        self.state.put(f"dev/{sid}", json.dumps(dataclasses.asdict(rec)))

    def pending(self) -> Pending | None:
        """The dm transaction in flight, or None."""
        raw = self.state.get("pending")
        return Pending(**json.loads(raw)) if raw else None

    def allocate(self, range_base: int) -> int:
        """Return the next thin id to try in this store's range (wrapping, never the marker)."""
        offset = int(self.state.get("next") or 1)
        if offset >= RANGE:
            offset = 1
        return range_base + offset

    def begin(self, pending: Pending, range_base: int) -> None:
        """Write ``pending`` (and move the id allocator past its thin id) atomically."""
        with self.state.transaction():
            self.state.put("pending", json.dumps(dataclasses.asdict(pending)))
            if pending.op == "create":
                self.state.put("next", str(pending.thin - range_base + 1))

    def finish(self, pending: Pending, tid: int, record: DeviceRecord | None) -> None:
        """Record the outcome of ``pending`` and close it, atomically.

        Args:
            tid: the pool transaction id now.
            record: the device to record for ``pending.sid``; None drops it.
        """
        with self.state.transaction():
            if record is None:
                self.state.delete(f"dev/{pending.sid}")
            else:
                self.state.put(f"dev/{pending.sid}", json.dumps(dataclasses.asdict(record)))
            self.state.put("tid", str(tid))
            self.state.delete("pending")

    def set_tid(self, tid: int) -> None:
        """Record the pool transaction id this store last saw or set."""
        self.state.put("tid", str(tid))
