"""``Store``: the snapshot API over one root, one driver and one database.

The store owns the metadata and the graph; the driver owns the bytes (see
``layerfs.driver``). Each public method is one database transaction, or,
where storage work cannot happen inside a transaction, an intent recorded
first (state ``creating``, ``committing``, ``removing``, ``applying``)
and cleared after. Opening a store resolves the intents of processes that
died: interrupted creates, applies and removals are removed, interrupted
commits are finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from . import _environment, _layers, _owner, _records, _recovery, errors
from ._context import StoreContext, rmdir_quiet
from ._faults import crash_point
from ._filters import compile_filters
from ._keys import validate_key
from ._metadata import DriverStateTable, Metadata
from ._records import (
    COMMITTING,
    CREATING,
    MOUNTED,
    MOUNTING,
    READY,
    REMOVING,
    TEMPORARY,
    UNMOUNTING,
    Record,
)
from ._registry import DEFAULT_ORDER, load, unavailable_reason
from ._types import Change, Info, Kind, Mount, Usage
from .driver import Driver, SnapshotRef

log = logging.getLogger("layerfs")

#: How long ``mount``/``unmount`` wait for another process's mount or unmount
#: of the same target to finish before answering ``Busy``.
MOUNT_WAIT_S = 30.0


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    out = dict(labels or {})
    for k, v in out.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise errors.InvalidArgument(
                f"label {k!r}={v!r}: labels are non-empty string keys and string values"
            )
    return out


class Store:
    """Snapshots and layers in one root directory, through one storage driver.

    Terms (as in containerd): an *active* snapshot is writable and has a
    *key*; ``commit`` turns it into a *committed* snapshot with a *name*,
    the only kind that can be a *parent*; a *view* is a read-only snapshot
    of a parent. Keys and names share one space.

    Args:
        root: the store directory (created when missing).
        driver: driver name; None uses the one recorded in the store, or
            probes ``overlay``, ``fuse``, ``copy`` for a new store.
        options: driver options (strings); recorded, so reopening without
            them reuses them. One option belongs to the store itself:
            ``sync`` (``on``, the default, or ``off``). With ``on`` every
            operation that returned survives a power loss, and a snapshot
            is marked committed only once its files are on disk; ``off``
            skips both syncs, for throwaway stores (see the README).

    Raises:
        errors.FailedPrecondition: the store was made with another driver.
        errors.Unsupported: the driver cannot run here (the reason says why).
        errors.NotFound: no driver of that name is installed.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        driver: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root).absolute()
        self._closed = True
        try:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o711)
        except OSError as exc:
            raise errors.from_oserror(exc, f"create store root {self.root}") from exc
        self._meta = Metadata(self.root / "metadata.db")
        try:
            name, opts = self._settle_driver(driver, options)
            self._sync = _parse_sync(opts.pop("sync", "on"))
            self._meta.set_durable(self._sync)
            cls = load(name)
            home = self.root / name
            home.mkdir(exist_ok=True, mode=0o711)
            (self.root / "mounts").mkdir(exist_ok=True, mode=0o711)
            self._driver: Driver = cls(home, opts, DriverStateTable(self._meta))
            self._ctx = StoreContext(self.root, self._driver, self._meta, self._sync)
        except BaseException:
            self._meta.close()
            raise
        self.driver_name = name
        self._closed = False
        try:
            self._recover()
        except BaseException:
            self.close()
            raise

    # -- opening -------------------------------------------------------------

    def _settle_driver(
        self, driver: str | None, options: Mapping[str, str] | None
    ) -> tuple[str, dict[str, str]]:
        with self._meta.transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE name='driver'").fetchone()
            recorded = None if row is None else str(row[0])
            if recorded is not None and driver is not None and driver != recorded:
                raise errors.FailedPrecondition(
                    f"store {self.root} was created with driver {recorded!r}, not {driver!r}; "
                    f"open it with driver={recorded!r} or use another root"
                )
            if recorded is None:
                name, passed_over = (driver, {}) if driver else _probe_default(self.root)
                load(name)  # an unknown name is NotFound, not "unavailable"
                reason = unavailable_reason(name, self.root)
                if reason is not None:
                    raise errors.Unsupported(
                        f"driver {name!r} cannot be used here: {reason}; "
                        "or open the store without a driver to use one that works here"
                    )
                db.execute("INSERT INTO meta(name, value) VALUES ('driver', ?)", (name,))
                # Why a probed store did not get the drivers before it: status() shows it.
                db.execute(
                    "INSERT INTO meta(name, value) VALUES ('driver_passed_over', ?)",
                    (json.dumps(passed_over, sort_keys=True),),
                )
            else:
                name = recorded
            row = db.execute("SELECT value FROM meta WHERE name='driver_options'").fetchone()
            opts: dict[str, str] = json.loads(row[0]) if row else {}
            for k, v in (options or {}).items():
                if not isinstance(k, str) or not isinstance(v, str):
                    raise errors.InvalidArgument(f"driver option {k!r}={v!r}: options are strings")
                opts[k] = v
            _parse_sync(opts.get("sync", "on"))  # a bad value is refused before it is recorded
            db.execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES ('driver_options', ?)",
                (json.dumps(opts, sort_keys=True),),
            )
        return name, opts

    def _recover(self) -> None:
        """Resolve intents and mounts left by processes that died; log what needs an operator."""
        for line in _recovery.find_problems(self._ctx, repair=True, on_open=True):
            log.warning("store %s: %s", self.root, line)

    # -- helpers ---------------------------------------------------------------

    def _live(self) -> None:
        if self._closed:
            raise errors.FailedPrecondition(f"store {self.root} is closed; open a new Store")

    def _ref_from(self, rec: Record) -> SnapshotRef:
        return self._ctx.ref(rec)

    def _get(self, key: str) -> Record:
        return self._ctx.get(key)

    # -- snapshots -------------------------------------------------------------

    def prepare(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create an active (writable) snapshot ``key`` on ``parent`` and return its mounts.

        Raises:
            errors.AlreadyExists: ``key`` is taken.
            errors.NotFound: ``parent`` does not exist.
            errors.FailedPrecondition: ``parent`` is not committed.
            errors.InvalidArgument: malformed key or labels.
        """
        return self._new(key, Kind.ACTIVE, parent, labels)

    def view(
        self, key: str, parent: str | None = None, labels: Mapping[str, str] | None = None
    ) -> list[Mount]:
        """Create a read-only view ``key`` of ``parent`` and return its mounts.

        Raises: as ``prepare``.
        """
        return self._new(key, Kind.VIEW, parent, labels)

    def _new(
        self, key: str, kind: Kind, parent: str | None, labels: Mapping[str, str] | None
    ) -> list[Mount]:
        self._live()
        validate_key(key)
        rec, ref = self._ctx.create(key, kind, parent, _check_labels(labels), CREATING)
        with self._meta.transaction() as db:
            _records.set_state(db, rec.id, READY, None)
        return self._driver.mounts(ref)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> Info:
        """Turn the active snapshot ``key`` into the committed snapshot ``name``.

        Labels default to the active snapshot's labels.

        Raises:
            errors.NotFound: no snapshot ``key``.
            errors.AlreadyExists: ``name`` is taken.
            errors.FailedPrecondition: ``key`` is not active.
            errors.Busy: ``key`` is mounted through this store; unmount it first.
        """
        self._live()
        validate_key(name, "name")
        rec = self._get(key)
        if rec.kind is not Kind.ACTIVE:
            raise errors.FailedPrecondition(
                f"snapshot {key!r} is {rec.kind.value}; only active snapshots can be committed"
            )
        ref = self._ref_from(rec)
        usage = self._driver.usage(ref)
        labels_ = _check_labels(labels) if labels is not None else rec.labels
        with self._meta.transaction() as db:
            current = _records.get(db, key)
            if current.id != rec.id or current.kind is not Kind.ACTIVE:
                raise errors.FailedPrecondition(f"snapshot {key!r} changed during commit; retry")
            # Checked in the same transaction that freezes it: no mount can slip in between.
            if _records.mount_rows(db, rec.id):
                raise errors.Busy(f"snapshot {key!r} is mounted; unmount it before commit")
            if name != key and _records.find(db, name) is not None:
                raise errors.AlreadyExists(
                    f"snapshot {name!r} already exists; commit under another name"
                )
            _records.mark_committed(db, rec.id, name, labels_, COMMITTING, _owner.current())
        committed = SnapshotRef(rec.sid, name, Kind.COMMITTED, ref.parents)
        crash_point("commit:marked")
        try:
            self._driver.commit(committed)
        except BaseException:
            # Nothing was frozen: give the caller back the active snapshot.
            with self._meta.transaction() as db:
                _records.revert_commit(db, rec.id, key, rec.labels)
            raise
        crash_point("commit:frozen")
        self._ctx.make_durable(committed)
        with self._meta.transaction() as db:
            _records.set_state(db, rec.id, READY, None)
            _records.set_usage(db, rec.id, usage.size, usage.inodes)
            return _records.info(db, _records.get(db, name))

    def remove(self, key: str) -> None:
        """Remove the snapshot ``key`` and its storage.

        Raises:
            errors.NotFound: no snapshot ``key``.
            errors.FailedPrecondition: it has children; remove them first.
            errors.Busy: it is mounted through this store; unmount it first.
        """
        self._live()
        rec = self._get(key)
        with self._ctx.storage_lock():
            with self._meta.transaction() as db:
                rec = _records.get(db, key)
                if _records.has_children(db, rec.id):
                    raise errors.FailedPrecondition(
                        f"snapshot {key!r} has children; remove them first"
                    )
                if _records.mount_rows(db, rec.id):
                    raise errors.Busy(f"snapshot {key!r} is mounted; unmount it before removing")
                _records.set_state(db, rec.id, REMOVING, _owner.current())
            crash_point("remove:marked")
            try:
                self._driver.remove(rec.sid)
            except BaseException:
                # Removal is idempotent: the snapshot stays listed so it can be retried.
                with self._meta.transaction() as db:
                    _records.set_state(db, rec.id, READY, None)
                raise
            crash_point("remove:released")
            with self._meta.transaction() as db:
                _records.delete(db, rec.id)

    def stat(self, key: str) -> Info:
        """Return the ``Info`` of ``key``. Raises ``errors.NotFound``."""
        self._live()
        validate_key(key)
        with self._meta.transaction(write=False) as db:
            return _records.info(db, _records.get(db, key))

    def update(self, info: Info, *fieldpaths: str) -> Info:
        """Write ``info.labels`` back; only labels can change.

        Args:
            info: the snapshot (by ``info.name``) with the wanted labels.
            fieldpaths: ``"labels"`` replaces all labels, ``"labels.x"``
                sets (or, when absent from ``info.labels``, deletes) one
                label; none replaces all labels.

        Raises:
            errors.NotFound: no such snapshot.
            errors.InvalidArgument: a field other than labels.
        """
        self._live()
        wanted = _check_labels(info.labels)
        with self._meta.transaction() as db:
            rec = _records.get(db, info.name)
            labels = dict(rec.labels)
            if not fieldpaths or "labels" in fieldpaths:
                labels = wanted
            for path in fieldpaths:
                if path == "labels":
                    continue
                if not path.startswith("labels.") or len(path) == len("labels."):
                    raise errors.InvalidArgument(
                        f"cannot update field {path!r} of {info.name!r}; only 'labels' and 'labels.<key>' can change"
                    )
                label = path[len("labels.") :]
                if label in wanted:
                    labels[label] = wanted[label]
                else:
                    labels.pop(label, None)
            _records.set_labels(db, rec.id, labels)
            return _records.info(db, _records.get(db, info.name))

    def usage(self, key: str) -> Usage:
        """Disk used by ``key``'s own storage (not its parents'). Raises ``errors.NotFound``."""
        self._live()
        rec = self._get(key)
        if rec.kind is Kind.COMMITTED and rec.size is not None:
            return Usage(rec.size, rec.inodes or 0)
        return self._driver.usage(self._ref_from(rec))

    def walk(self, *filters: str) -> Iterator[Info]:
        """Yield every snapshot matching any of ``filters`` (containerd syntax), by name.

        Raises:
            errors.InvalidArgument: a malformed filter.
        """
        self._live()
        match = compile_filters(filters)
        with self._meta.transaction(write=False) as db:
            infos = _records.infos(db)
        return iter([i for i in infos if match(i)])

    def mounts(self, key: str) -> list[Mount]:
        """The mounts that give ``key``'s tree (to mount it yourself). Raises ``errors.NotFound``."""
        self._live()
        return self._driver.mounts(self._ref_from(self._get(key)))

    # -- mounting ----------------------------------------------------------------

    def mount(
        self, key: str, target: str | os.PathLike[str] | None = None, *, persistent: bool = False
    ) -> str:
        """Mount ``key`` and return the path of its tree. Refcounted per target.

        Without ``target`` the store picks ``<root>/mounts/<id>``; drivers
        whose snapshots are plain directories (``copy``) return that
        directory without mounting anything. Each call needs one
        ``unmount``; the last one really unmounts. A call that finds
        another process mounting or unmounting the same target waits for it.

        An active snapshot is mounted read-write at one target at a time:
        two writable mounts of one upper directory corrupt it (overlayfs
        calls the result undefined). Mount it again at the same target to
        share that mount.

        A mount belongs to the processes that hold it: if they all die
        without unmounting, ``check()`` reports the mount and
        ``check(repair=True)`` takes it down. Opening a store never takes
        down a working mount (a container may be running on it).
        ``persistent=True`` makes a mount that belongs to no process (the
        ``layerfs mount`` command uses it).

        Raises:
            errors.NotFound: no snapshot ``key``.
            errors.Busy: ``target`` holds another snapshot; or ``key`` is
                active and mounted at another target; or another process
                kept the target mounting or unmounting too long.
            errors.Unsupported: mounting needs privileges this process lacks.
        """
        self._live()
        deadline = time.monotonic() + MOUNT_WAIT_S
        while True:
            rec = self._get(key)
            ref = self._ref_from(rec)
            # Views and committed snapshots get a read-only mount, not their
            # (writable) directory; without privileges no mount can be made.
            readonly_mount = ref.readonly and os.geteuid() == 0
            direct = self._ctx.direct_path(ref) if target is None and not readonly_mount else None
            if direct is not None:
                path = str(direct)
            elif target is None:
                path = str(self._ctx.mounts_dir / rec.sid)
            else:
                path = os.path.realpath(target)
            outcome = self._mount_row_for(rec, path, direct is not None, persistent)
            if outcome == "joined":
                return path
            if outcome == "new":
                break
            if time.monotonic() > deadline:
                raise errors.Busy(
                    f"mount target {path} of {key!r} stayed {outcome} by another process for "
                    f"{MOUNT_WAIT_S:g}s; retry, or run check(repair=True) if that process hangs"
                )
            time.sleep(0.02)
        me = _owner.current()
        crash_point("mount:recorded")
        try:
            if direct is None:
                os.makedirs(path, exist_ok=True)
                self._driver.mount(ref, Path(path))
                crash_point("mount:mounted")
        except BaseException:
            with self._meta.transaction() as db:
                row = _records.mount_row(db, path)
                if row is not None and row.state == MOUNTING and row.owner == me:
                    _records.delete_mount(db, path)
            if direct is None:
                rmdir_quiet(path, self._ctx.mounts_dir)
            raise
        with self._meta.transaction() as db:
            row = _records.mount_row(db, path)
            if row is not None:
                _records.put_mount(
                    db,
                    dataclasses.replace(
                        row, state=MOUNTED, owner=None if persistent else row.owner
                    ),
                )
        return path

    def _mount_row_for(self, rec: Record, path: str, direct: bool, persistent: bool) -> str:
        """Join or start the mount row of ``path`` in one transaction.

        Returns ``"joined"`` (a reference added to a finished mount),
        ``"new"`` (a MOUNTING row owned by this process: go and mount), or
        the state (``"mounting"``, ``"unmounting"``) to wait out.
        """
        me = _owner.current()
        stale = None
        with self._meta.transaction() as db:
            current = _records.by_id(db, rec.id)
            if current is None or current.state != READY or current.key != rec.key:
                raise errors.NotFound(
                    f"snapshot {rec.key!r} does not exist any more (removed or committed "
                    "meanwhile); list snapshots with walk()"
                )
            row = _records.mount_row(db, path)
            if row is not None:
                if row.snapshot_id != rec.id:
                    raise errors.Busy(
                        f"mount target {path} holds another snapshot; unmount it first"
                    )
                if row.state != MOUNTED:
                    if _owner.any_alive(row.owner):
                        return row.state
                    stale = row
                else:
                    owner = None if persistent or row.owner is None else f"{row.owner} {me}"
                    _records.put_mount(db, dataclasses.replace(row, refs=row.refs + 1, owner=owner))
                    return "joined"
            elif rec.kind is Kind.ACTIVE and not direct:
                for other in _records.mount_rows(db, rec.id):
                    if not other.direct and other.target != path:
                        raise errors.Busy(
                            f"snapshot {rec.key!r} is active and mounted read-write at "
                            f"{other.target}; use that path (mount it there) or unmount it first"
                        )
            if stale is None:
                _records.put_mount(db, _records.MountRecord(path, rec.id, 1, MOUNTING, me, direct))
                return "new"
        # Left mid-way by a dead process: take it down, then the caller starts afresh.
        claimed = self._ctx.claim_mount(stale)
        if claimed is not None:
            self._ctx.drop_mount(claimed)
        return stale.state

    def unmount(self, key: str, target: str | os.PathLike[str] | None = None) -> None:
        """Drop one reference to a mount of ``key``; the last one unmounts (lazily).

        Args:
            target: which mount, when ``key`` is mounted in several places.

        Raises:
            errors.NotFound: ``key`` is not mounted (there).
            errors.Busy: another process kept it mounting too long.
        """
        self._live()
        rec = self._get(key)
        want = os.path.realpath(target) if target is not None else None
        me = _owner.current()
        deadline = time.monotonic() + MOUNT_WAIT_S
        while True:
            with self._meta.transaction() as db:
                rows = [r for r in _records.mount_rows(db, rec.id) if r.state != TEMPORARY]
                if want is not None:
                    rows = [r for r in rows if r.target == want]
                ready = [r for r in rows if r.state == MOUNTED]
                if ready:
                    default = str(self._ctx.mounts_dir / rec.sid)
                    row = next((r for r in ready if r.target == default), ready[0])
                    owner = _drop_owner(row.owner, me)
                    if row.refs > 1:
                        _records.put_mount(
                            db, dataclasses.replace(row, refs=row.refs - 1, owner=owner)
                        )
                        return
                    claimed = _records.MountRecord(
                        row.target, rec.id, 0, UNMOUNTING, me, row.direct
                    )
                    _records.put_mount(db, claimed)
                    break
                if not rows or not any(_owner.any_alive(r.owner) for r in rows):
                    raise errors.NotFound(
                        f"snapshot {key!r} is not mounted{' at ' + str(want) if want else ''}"
                    )
            if time.monotonic() > deadline:
                raise errors.Busy(f"snapshot {key!r}: its mount stayed in progress; retry")
            time.sleep(0.02)
        self._ctx.drop_mount(claimed)

    @contextlib.contextmanager
    def mounted(self, key: str) -> Iterator[str]:
        """``with store.mounted(key) as path:`` mounts for the block, then unmounts."""
        path = self.mount(key)
        try:
            yield path
        finally:
            self.unmount(key, path)

    # -- layers --------------------------------------------------------------------

    def apply(
        self,
        fileobj: BinaryIO,
        parent: str | None = None,
        labels: Mapping[str, str] | None = None,
        *,
        max_size: int | None = None,
    ) -> Info:
        """Apply an OCI layer tar (plain, gzip, zstd or xz) on ``parent`` and commit it.

        The result is named by its OCI chain ID; applying the same layer on
        the same parent again returns the existing snapshot. On any error
        nothing is left behind. Paths through symlinks resolve inside
        the root, as container runtimes do.

        Args:
            max_size: refuse a layer whose uncompressed tar is bigger.

        Raises:
            errors.InvalidArgument: not a tar, truncated, bigger than
                ``max_size``, a name or path too long, or an entry that
                escapes the root (``..``, absolute path, link outside).
            errors.NoSpace: the store's filesystem is full.
            errors.NotFound / errors.FailedPrecondition: bad ``parent``.
        """
        self._live()
        if max_size is not None and (not isinstance(max_size, int) or max_size < 0):
            raise errors.InvalidArgument(f"max_size={max_size!r}: give a byte count >= 0 or None")
        return _layers.apply_layer(self._ctx, fileobj, parent, _check_labels(labels), max_size)

    def export(self, name: str) -> Iterator[bytes]:
        """Yield the OCI layer tar of ``name`` against its parent, in chunks.

        Deterministic: sorted entries, numeric owners, whiteouts for
        deletions, opaque markers, no ``lost+found``.

        Raises:
            errors.NotFound: no snapshot ``name`` (raised on first iteration).
        """
        self._live()
        return _layers.export_layer(self._ctx, name)

    def changes(self, name: str) -> list[Change]:
        """The paths ``name`` adds, modifies and deletes relative to its parent, sorted.

        Raises:
            errors.NotFound: no snapshot ``name``.
        """
        self._live()
        return _layers.layer_changes(self._ctx, name)

    # -- upkeep ------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Facts about the store and its driver (JSON-serialisable)."""
        self._live()
        with self._meta.transaction(write=False) as db:
            counts = dict(
                db.execute(
                    "SELECT kind, COUNT(*) FROM snapshots WHERE state=? GROUP BY kind", (READY,)
                ).fetchall()
            )
            mounted = db.execute("SELECT COUNT(*) FROM mounts").fetchone()[0]
            row = db.execute("SELECT value FROM meta WHERE name='driver_passed_over'").fetchone()
        return {
            "root": str(self.root),
            "driver": self.driver_name,
            # Drivers layerfs.open() probed first and could not use, with why.
            "driver_passed_over": json.loads(row[0]) if row else {},
            "environment": _environment.facts(self.root),
            "snapshots": {k.value: int(counts.get(k.value, 0)) for k in Kind},
            "mounts": int(mounted),
            "driver_status": self._driver.status(),
        }

    def check(self, repair: bool = False) -> list[str]:
        """Find inconsistencies; with ``repair`` fix those that can be fixed.

        Returns:
            One line per problem found (before repair), saying what repair does.
        """
        self._live()
        return _recovery.find_problems(self._ctx, repair=repair, on_open=False)

    def close(self) -> None:
        """Release the driver and the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._driver.close()
        finally:
            self._meta.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r}, driver={self.driver_name!r})"


def _parse_sync(value: str) -> bool:
    if value.lower() in ("on", "true", "1", "yes"):
        return True
    if value.lower() in ("off", "false", "0", "no"):
        return False
    raise errors.InvalidArgument(f"store option sync={value!r}: use on or off")


def _drop_owner(owners: str | None, me: str) -> str | None:
    """The holders of a mount minus one reference: ours, else a dead one's, else any."""
    if owners is None:
        return None
    held = owners.split()
    for i, o in enumerate(held):
        if o == me:
            del held[i]
            break
    else:
        dead = [i for i, o in enumerate(held) if not _owner.is_alive(o)]
        if held:
            del held[dead[0] if dead else 0]
    return " ".join(held) or None


def _probe_default(root: Path) -> tuple[str, dict[str, str]]:
    """The first driver of ``DEFAULT_ORDER`` that works at ``root``, and why earlier ones did not."""
    reasons: dict[str, str] = {}
    for name in DEFAULT_ORDER:
        reason = unavailable_reason(name, root)
        if reason is None:
            return name, reasons
        reasons[name] = reason
    raise errors.Unsupported(
        "no storage driver can run here: " + "; ".join(f"{n}: {r}" for n, r in reasons.items())
    )


def default_root() -> Path:
    """``/var/lib/layerfs`` for root, else ``$XDG_DATA_HOME/layerfs``."""
    if os.geteuid() == 0:
        return Path("/var/lib/layerfs")
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "layerfs"


def open_store(root: str | os.PathLike[str] | None = None, driver: str | None = None) -> Store:
    """Open (or create) a store with the defaults: see ``default_root`` and ``Store``."""
    return Store(root if root is not None else default_root(), driver=driver)
