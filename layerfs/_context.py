"""``StoreContext``: one store's driver, database and locks, and the steps built on them.

``Store`` builds one and keeps it; the modules that do multi-step work for
the store (``_layers``: apply, export, changes; ``_recovery``: crash repair
and ``check``) are handed it and use nothing else of the store. What lives
here is what more than one of them needs: reading records as driver
``SnapshotRef`` values, creating and discarding snapshots with their
intents, the mount-row claims that let one process take a mount down, and
a snapshot's tree at a path for the length of a block.

The context never checks whether the store is closed; the public methods
of ``Store`` do that before they call in.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from . import _owner, _records, errors
from ._faults import crash_point
from ._keys import validate_key
from ._locks import storage_lock
from ._metadata import Metadata
from ._mounting import unmount_all
from ._records import APPLYING, READY, TEMPORARY, UNMOUNTING, MountRecord, Record
from ._types import Kind
from .driver import Driver, SnapshotRef


@dataclasses.dataclass
class StoreContext:
    """What the store's helper modules may use of one open store.

    Attributes:
        root: the store directory.
        driver: the storage driver.
        meta: the metadata database.
        sync: make committed snapshots durable (the store's ``sync`` option).
    """

    root: Path
    driver: Driver
    meta: Metadata
    sync: bool = True

    @property
    def mounts_dir(self) -> Path:
        """Where the store makes its own mount points (``<root>/mounts``)."""
        return self.root / "mounts"

    # -- records as drivers see them ---------------------------------------------

    def get(self, key: str) -> Record:
        """The record of ``key``. Raises ``errors.NotFound`` or ``InvalidArgument``."""
        validate_key(key)
        with self.meta.transaction(write=False) as db:
            return _records.get(db, key)

    def ref(self, rec: Record, by_id: Mapping[int, Record] | None = None) -> SnapshotRef:
        """The driver's view of ``rec``; ``by_id`` (all records) spares a query."""
        parents: list[str] = []
        pid = rec.parent_id
        if by_id is not None:
            while pid is not None and pid in by_id:
                parents.append(str(pid))
                pid = by_id[pid].parent_id
        else:
            with self.meta.transaction(write=False) as db:
                parents = [p.sid for p in _records.ancestors(db, rec)]
        return SnapshotRef(rec.sid, rec.key, rec.kind, tuple(parents))

    def storage_lock(self, exclusive: bool = False) -> contextlib.AbstractContextManager[None]:
        """See ``layerfs._locks``: held shared around creates and removals."""
        return storage_lock(self.root, exclusive=exclusive)

    def make_durable(self, ref: SnapshotRef) -> None:
        """Put a snapshot's files on disk before it is marked committed (unless ``sync=off``)."""
        if not self.sync:
            return
        try:
            self.driver.sync(ref)
        except OSError as exc:
            raise errors.from_oserror(exc, f"sync the storage of {ref.key!r}") from exc

    def direct_path(self, ref: SnapshotRef) -> Path | None:
        """The snapshot's tree as a plain directory, when the driver has one for it."""
        if not self.driver.capabilities.direct_path:
            return None
        return self.driver.direct_path(ref)

    # -- creating and discarding ----------------------------------------------------

    def create(
        self, key: str, kind: Kind, parent: str | None, labels: dict[str, str], state: str
    ) -> tuple[Record, SnapshotRef]:
        """Insert a record in intent ``state`` and allocate its storage.

        Raises:
            errors.NotFound: ``parent`` does not exist.
            errors.FailedPrecondition: ``parent`` is not committed.
            errors.AlreadyExists: ``key`` is taken.
        """
        me = _owner.current()
        with self.storage_lock():
            with self.meta.transaction() as db:
                parent_rec = None
                if parent is not None:
                    validate_key(parent, "parent")
                    parent_rec = _records.find(db, parent)
                    if parent_rec is None or parent_rec.state != READY:
                        raise errors.NotFound(
                            f"parent {parent!r} of {key!r} does not exist; commit or apply it first"
                        )
                    if parent_rec.kind is not Kind.COMMITTED:
                        raise errors.FailedPrecondition(
                            f"parent {parent!r} of {key!r} is {parent_rec.kind.value}; only committed snapshots can be parents"
                        )
                rec = _records.insert(db, key, kind, parent_rec, labels, state, me)
                parents = tuple(p.sid for p in _records.ancestors(db, rec))
            ref = SnapshotRef(rec.sid, key, kind, parents)
            crash_point(f"{state}:recorded")
            try:
                self.driver.create(ref)
            except BaseException:
                self.discard(rec)
                raise
            crash_point(f"{state}:created")
        return rec, ref

    def discard(self, rec: Record) -> None:
        """Undo a half-made snapshot: storage first, then the record."""
        with self.storage_lock():
            try:
                self.driver.remove(rec.sid)
            finally:
                with self.meta.transaction() as db:
                    _records.delete(db, rec.id)

    @contextlib.contextmanager
    def hidden_active(self, parent: str | None) -> Iterator[tuple[Record, SnapshotRef]]:
        """An active snapshot under a key no user can spell, discarded if the block fails.

        Its record stays in state ``applying`` (an intent) until the caller
        marks it otherwise.
        """
        key = f"\x00{Kind.ACTIVE.value}-{uuid.uuid4().hex}"
        rec, ref = self.create(key, Kind.ACTIVE, parent, {}, APPLYING)
        try:
            yield rec, ref
        except BaseException:
            self.discard_if_present(rec)
            raise

    def discard_if_present(self, rec: Record) -> None:
        """Discard ``rec`` and take down its mounts, if it is still an ``applying`` intent."""
        with self.meta.transaction(write=False) as db:
            still = _records.by_id(db, rec.id)
            rows = _records.mount_rows(db, rec.id)
        if still is not None and still.state == APPLYING:
            for m in rows:
                claimed = self.claim_mount(m)
                if claimed is not None:
                    self.drop_mount(claimed)
            self.discard(rec)

    # -- mount rows ------------------------------------------------------------------

    def mount_rows(self, sid: int) -> list[MountRecord]:
        """The mount rows of snapshot ``sid``."""
        with self.meta.transaction(write=False) as db:
            return _records.mount_rows(db, sid)

    def claim_mount(self, seen: MountRecord) -> MountRecord | None:
        """Take over the mount row ``seen`` to unmount it, if nobody changed it since.

        Returns the claimed row (state UNMOUNTING, owned by this process),
        or None when another process got there first or the row changed.
        """
        me = _owner.current()
        with self.meta.transaction() as db:
            row = _records.mount_row(db, seen.target)
            if row != seen:
                return None
            state = TEMPORARY if row.state == TEMPORARY else UNMOUNTING
            claimed = MountRecord(row.target, row.snapshot_id, 0, state, me, row.direct)
            _records.put_mount(db, claimed)
        return claimed

    def release_claim(self, claimed: MountRecord, original: MountRecord) -> None:
        """Give back a row claimed by ``claim_mount`` that turned out to be healthy."""
        with self.meta.transaction() as db:
            if _records.mount_row(db, claimed.target) == claimed:
                _records.put_mount(db, original)

    def drop_mount(self, m: MountRecord) -> None:
        """Take down a mount whose row this process has claimed (UNMOUNTING or TEMPORARY).

        Holds the storage lock shared: a driver's records of a mount (FUSE
        servers) must not look stale to a ``check`` half-way through.
        """
        if not m.direct:
            with self.meta.transaction(write=False) as db:
                rec = _records.by_id(db, m.snapshot_id)
            with self.storage_lock():
                if rec is not None:
                    self.driver.unmount(self.ref(rec), Path(m.target))
                else:
                    # Removed meanwhile (its removal released the storage and
                    # any server): only the mount point is left to detach.
                    unmount_all(m.target)
            rmdir_quiet(m.target, self.mounts_dir)
        with self.meta.transaction() as db:
            row = _records.mount_row(db, m.target)
            if row is not None and row.state in (UNMOUNTING, TEMPORARY) and row.owner == m.owner:
                _records.delete_mount(db, m.target)

    @contextlib.contextmanager
    def temporary_tree(self, ref: SnapshotRef) -> Iterator[Path]:
        """The tree of ``ref`` readable at a path, mounting it if the driver needs that."""
        direct = self.direct_path(ref)
        if direct is not None:
            yield direct
            return
        path = self.mounts_dir / f"tmp-{uuid.uuid4().hex[:12]}"
        row = MountRecord(str(path), int(ref.id), 1, TEMPORARY, _owner.current(), False)
        with self.meta.transaction() as db:
            _records.put_mount(db, row)
        try:
            path.mkdir()
            self.driver.mount(ref, path)
            yield path
        finally:
            self.drop_mount(row)


def rmdir_quiet(path: str | Path, only_under: Path) -> None:
    """Remove the empty directory ``path`` if it is under ``only_under``; errors are ignored."""
    if not str(path).startswith(str(only_under) + os.sep):
        return
    with contextlib.suppress(OSError):
        os.rmdir(path)
