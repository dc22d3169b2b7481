"""DevmapperDriver: one dm-thin device per snapshot, crash-safe through a journal.

How snapshots map onto the pool:

- A *base* thin device is made once (``create_thin``) and formatted
  (ext4 or xfs); it is never mounted.
- Every snapshot, active, view or committed, is a ``create_snap`` of its
  parent's device (of the base when it has no parent). Active snapshots
  and views are activated as ``<prefix>-<snapshot id>`` and mounted
  read-write or read-only; they stay activated across unmounts (each
  activation is a dmsetup call) until commit, remove or ``close``. Commit
  deactivates the device (a committed layer is only ever an origin, and a
  deactivated origin needs no suspend); a committed layer mounted read-only
  (to read its tree) is deactivated again on unmount.
- Every pool message happens inside a journalled transaction (see
  ``journal.py``) closed by ``set_transaction_id``; ``_recover`` rolls an
  interrupted one forward or back when the driver opens.

dm device activation is runtime state and is not journalled: on open the
driver resumes devices a crash left suspended and removes devices named
after this store that have no record.

Several processes may open one store. Each holds ``users.lock`` in the
home shared while it is open; only the last one to close (the one that
gets it exclusively) takes idle devices and a pool it built down. Mounting
(activate, then mount) and the deactivation of a device that should stay
down (a committed layer read through a mount) take the pool lock, so one
process never removes a device another has activated to mount.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from layerfs import errors
from layerfs._run import CommandFailed, run
from layerfs._types import Kind, Mount, Usage
from layerfs.driver import Driver, DriverState, SnapshotRef

from . import dmsetup, faults, fsinfo, udev
from .journal import RANGE, Config, DeviceRecord, Journal, Pending
from .options import DevmapperOptions
from .pool import Pool
from .status import parse_thin

__all__ = ["DevmapperDriver"]

BASE = "base"


class DevmapperDriver(Driver):
    """Snapshots as dm-thin devices in a thin pool; see the module docstring.

    Args:
        home: the driver's home (loop files of a loopback pool live here).
        options: see ``DevmapperOptions``.
        state: the driver's records in the store's database.

    Raises:
        errors.InvalidArgument: bad options.
        errors.Unsupported: no dmsetup, no dm-thin in the kernel, or not root.
        errors.FailedPrecondition: the pool is not the one this store was made with.
    """

    name = "devmapper"

    def __init__(self, home: Path, options: Mapping[str, str], state: DriverState) -> None:
        super().__init__(home, options, state)
        self.opts = DevmapperOptions.parse(options)
        #: Committed snapshots this process activated to mount them read-only.
        self._transient: set[str] = set()
        reason = self.unavailable_reason(self.home)
        if reason is not None:
            raise errors.Unsupported(f"devmapper driver: {reason}")
        _load_module()
        self.journal = Journal(state)
        self._users = _join_users(self.home)
        config = self.journal.config()
        fresh = config is None
        prefix = config.prefix if config else "layerfs-" + _short_hash(os.path.realpath(self.home))
        self.use_udev = self._udev_wanted()
        try:
            self.pool = Pool.open(self.home, self.opts, prefix + "-pool", fresh, self.use_udev)
        except BaseException:
            os.close(self._users)
            raise
        try:
            with self.pool.locked():
                # Re-read: another process opening the new store may have claimed it.
                config = self.journal.config() or self._claim_range(prefix)
                self.config = config
                self._recover()
                self._verify_pool()
        except BaseException:
            if _last_user(self._users):
                self.pool.close()
            os.close(self._users)
            raise

    # -- discovery ---------------------------------------------------------------

    @classmethod
    def unavailable_reason(cls, root: Path) -> str | None:
        """Why device-mapper thin provisioning cannot run here, or None."""
        if os.geteuid() != 0:
            return "device-mapper needs root"
        if not os.path.exists("/dev/mapper/control"):
            return "the kernel has no device-mapper (/dev/mapper/control is missing)"
        if not os.path.exists("/sys/module/dm_thin_pool"):
            try:
                run(["modprobe", "-n", "-q", "dm-thin-pool"], timeout=10)
            except (CommandFailed, errors.Unsupported):
                return "the kernel has no dm-thin-pool module"
        try:
            run(["dmsetup", "version"], timeout=10)
        except errors.Unsupported:
            return "dmsetup is not installed (apt-get install dmsetup)"
        except CommandFailed as exc:
            return f"dmsetup does not work: {exc.stderr}"
        return None

    # -- names and records -------------------------------------------------------

    def _udev_wanted(self) -> bool:
        if self.opts.udev == "auto":
            return udev.udevd_running()
        return self.opts.udev == "on"

    def _dev_name(self, sid: str) -> str:
        return f"{self.config.prefix}-{sid}"

    def _record(self, sid: str, key: str) -> DeviceRecord:
        rec = self.journal.device(sid)
        if rec is None:
            raise errors.NotFound(f"snapshot {key!r} has no thin device; run check(repair=True)")
        return rec

    # -- transactions --------------------------------------------------------------

    def _bump(self, old: int) -> int:
        """Advance the pool transaction id by one, re-reading it once if another store moved it."""
        try:
            self.pool.set_transaction_id(old, old + 1)
            return old + 1
        except errors.FailedPrecondition:
            now = self.pool.status().transaction_id
            self.pool.set_transaction_id(now, now + 1)
            return now + 1

    def _transact_create(
        self, sid: str, origin: int | None, origin_name: str | None, size: int, tid: int
    ) -> DeviceRecord:
        """Create thin device for ``sid`` (a snapshot of ``origin`` or empty) and record it.

        ``tid`` is the pool's transaction id as last read under the pool lock.
        """
        base = self.config.range_base
        for attempt in range(64):
            thin = self.journal.allocate(base)
            if attempt:
                tid = self.pool.status().transaction_id
            pending = Pending("create", sid, thin, origin, tid, tid + 1, size)
            self.journal.begin(pending, base)
            faults.point("create-journaled")
            try:
                if origin is None:
                    self.pool.create_thin(thin)
                else:
                    self.pool.create_snap(thin, origin, origin_name)
            except errors.AlreadyExists:
                # An id of this store's range left by an older crash; skip it.
                self.journal.finish(pending, tid, None)
                continue
            except BaseException:
                self.journal.finish(pending, tid, None)
                raise
            faults.point("create-messaged")
            new_tid = self._bump(tid)
            faults.point("create-bumped")
            record = DeviceRecord(thin, size)
            self.journal.finish(pending, new_tid, record)
            faults.point("create-recorded")
            return record
        raise errors.NoSpace(f"no free thin id in this store's range of thin pool {self.pool.name}")

    def _transact_delete(self, sid: str, rec: DeviceRecord) -> None:
        # The id this store last set saves a status call; when another store
        # moved it since, _bump re-reads it.
        tid = self.journal.tid()
        pending = Pending("delete", sid, rec.thin, None, tid, tid + 1)
        self.journal.begin(pending, self.config.range_base)
        faults.point("delete-journaled")
        self.pool.delete(rec.thin)
        faults.point("delete-messaged")
        new_tid = self._bump(tid)
        faults.point("delete-bumped")
        self.journal.finish(pending, new_tid, None)
        faults.point("delete-recorded")

    def _claim_range(self, prefix: str) -> Config:
        """Claim a free range of thin ids in the pool for a new store."""
        start = int(_short_hash(prefix), 16) % (1 << 24) // RANGE
        for i in range(256):
            base = ((start + i) % 256) * RANGE
            try:
                self.pool.create_thin(base)
            except errors.AlreadyExists:
                continue
            config = Config(prefix, self.pool.name, base, self.opts.fs, self.opts.base_size)
            tid = self.pool.status().transaction_id
            with self.state.transaction():
                self.journal.set_config(config)
                self.journal.set_tid(tid)
            return config
        raise errors.NoSpace(
            f"every thin id range of pool {self.pool.name} is taken by other stores"
        )

    def _recover(self) -> None:
        """Finish or undo the dm transaction a crash interrupted; tidy runtime devices."""
        pending = self.journal.pending()
        if pending is not None:
            now = self.pool.status().transaction_id
            done = now == pending.new_tid
            if pending.op == "create" and done:
                self.journal.finish(pending, now, DeviceRecord(pending.thin, pending.size))
            else:
                # A create that did not reach set_transaction_id is undone
                # (the store removes the half-made snapshot anyway); a delete
                # is always finished.
                self.pool.delete(pending.thin)
                if not done:
                    now = self._bump(now)
                self.journal.finish(pending, now, None)
        records = self.journal.devices()
        for name in dmsetup.ls():
            sid = self._sid_of(name)
            if sid is None:
                continue
            info = dmsetup.info(name)
            if info is not None and info.suspended:
                dmsetup.resume(name, udev=self.use_udev)
            if sid not in records:
                with contextlib.suppress(errors.Busy):
                    udev.remove_device(name, self.use_udev, deferred=False, retries=1)

    def _sid_of(self, name: str) -> str | None:
        head = self.config.prefix + "-"
        if not name.startswith(head) or name == self.pool.name:
            return None
        return name[len(head) :]

    def _verify_pool(self) -> None:
        st = self.pool.status()
        if st.failed:
            return  # check_writable reports it on the next write
        recorded = self.journal.tid()
        if st.transaction_id < recorded or not self.pool.exists(self.config.marker):
            raise errors.FailedPrecondition(
                f"thin pool {self.pool.name} is not the pool this store was made with "
                f"(transaction id {st.transaction_id}, recorded {recorded}, "
                f"marker thin id {self.config.marker}); give the right pool_name"
            )

    # -- devices -----------------------------------------------------------------------

    def _activate(self, sid: str, rec: DeviceRecord) -> str:
        name = self._dev_name(sid)
        if dmsetup.info(name) is not None:
            return udev.ensure_node(name)
        try:
            return udev.create_device(name, self.pool.thin_table(rec.thin, rec.size), self.use_udev)
        except errors.AlreadyExists:
            return udev.ensure_node(name)
        except errors.NotFound as exc:
            raise errors.Corrupt(
                f"thin id {rec.thin} of snapshot {sid} is missing from pool {self.pool.name}; "
                "run check(repair=True)"
            ) from exc

    def _deactivate(self, sid: str, key: str, deferred: bool, discard: bool = False) -> None:
        """Take the device of ``sid`` down.

        Args:
            discard: the device is about to be deleted: with option
                ``discard``, give its blocks back first. Never for a device
                that stays (a committed layer, the base): it would lose its data.
        """
        name = self._dev_name(sid)
        if dmsetup.info(name) is None:
            return
        # Discard only a device nobody has open: blkdiscard would wipe a live filesystem.
        if discard and self.opts.discard and dmsetup.open_count(name) == 0:
            with contextlib.suppress(CommandFailed, errors.Unsupported):
                run(["blkdiscard", udev.node_path(name)], timeout=600)
        try:
            gone = udev.remove_device(name, self.use_udev, deferred=deferred)
        except errors.Busy as exc:
            raise errors.Busy(
                f"snapshot {key!r}: device {name} is open (mounted?); unmount it and retry"
            ) from exc
        if not gone:
            raise errors.Busy(
                f"snapshot {key!r}: device {name} is still open; its removal is deferred "
                "until it is closed; unmount it, then retry"
            )

    def _mkfs(self, node: str) -> None:
        if self.config.fs == "xfs":
            argv = ["mkfs.xfs", "-q", "-f", "-K", node]
        else:
            argv = [
                "mkfs.ext4",
                "-q",
                "-F",
                "-E",
                "nodiscard,lazy_itable_init=0,lazy_journal_init=0",
                node,
            ]
        try:
            run(argv, timeout=600)
        except CommandFailed as exc:
            raise errors.LayerfsError(f"formatting the base device failed: {exc}") from exc

    def _ensure_base(self) -> DeviceRecord:
        """Return the formatted base device's record, making it the first time."""
        rec = self.journal.device(BASE)
        if rec is None:
            tid = self.pool.status().transaction_id
            rec = self._transact_create(BASE, None, None, self.config.base_size, tid)
        if self.state.get("base_ready") != "1":
            node = self._activate(BASE, rec)
            faults.point("base-formatting")
            self._mkfs(node)
            # Measured now, while it is active: every snapshot starts from these.
            mapped = parse_thin(dmsetup.status(self._dev_name(BASE)), node).mapped_sectors
            used = fsinfo.used_inodes(node, self.config.fs, self.home / "probe")
            rec = dataclasses.replace(rec, inodes=used, mapped=mapped)
            self.journal.put_device(BASE, rec)
            self._deactivate(BASE, BASE, deferred=False)
            self.state.put("base_ready", "1")
        return rec

    # -- storage ------------------------------------------------------------------------

    def create(self, snap: SnapshotRef) -> None:
        """Snapshot the parent's device (or the base) for a new active snapshot or view.

        Raises:
            errors.NoSpace: the pool is full or below the free-space floor.
            errors.Corrupt, errors.FailedPrecondition: the pool failed or is read-only.
            errors.NotFound: the parent has no device.
        """
        what = f"create snapshot {snap.key!r}"
        with self.pool.locked():
            st = self.pool.check_writable(self.opts.min_free_percent, what)
            tid = st.transaction_id
            if snap.parents:
                origin_sid = snap.parents[0]
                origin = self._record(origin_sid, origin_sid)
            elif self.journal.device(BASE) is None or self.state.get("base_ready") != "1":
                origin_sid, origin = BASE, self._ensure_base()
                tid = self.pool.status().transaction_id
            else:
                origin_sid, origin = BASE, self._record(BASE, BASE)
            rec = self._transact_create(
                snap.id, origin.thin, self._dev_name(origin_sid), origin.size, tid
            )
        node = self._activate(snap.id, rec)
        faults.point("create-activated")
        # A snapshot starts out sharing all of its origin's mapped blocks; a
        # frozen origin's count was recorded when it was measured at commit.
        shared = origin.mapped
        if shared < 0:
            shared = parse_thin(dmsetup.status(self._dev_name(snap.id)), node).mapped_sectors
        self.journal.put_device(snap.id, dataclasses.replace(rec, shared=shared))

    def commit(self, snap: SnapshotRef) -> None:
        """Deactivate the committed snapshot's device. Idempotent.

        Raises:
            errors.Busy: the device is still open (mounted somewhere).
        """
        self._record(snap.id, snap.key)
        self._deactivate(snap.id, snap.key, deferred=False)

    def remove(self, snap_id: str) -> None:
        """Deactivate and delete the snapshot's device. Idempotent.

        Raises:
            errors.Busy: the device is still open; its removal is deferred.
        """
        self._deactivate(snap_id, snap_id, deferred=True, discard=True)
        rec = self.journal.device(snap_id)
        if rec is None:
            return
        with self.pool.locked():
            self._transact_delete(snap_id, rec)

    def mounts(self, snap: SnapshotRef) -> list[Mount]:
        """Activate the device and return its one mount (rw for active, else ro)."""
        rec = self._record(snap.id, snap.key)
        if snap.kind is Kind.COMMITTED and dmsetup.info(self._dev_name(snap.id)) is None:
            self._transient.add(snap.id)
        node = self._activate(snap.id, rec)
        opts: tuple[str, ...] = ("rw",) if snap.kind is Kind.ACTIVE else ("ro",)
        if self.config.fs == "xfs":
            opts += ("nouuid",)
        return [Mount(self.config.fs, node, opts)]

    def mount(self, snap: SnapshotRef, target: Path) -> None:
        """Activate and mount, under the pool lock (see the module docstring)."""
        with self.pool.locked():
            super().mount(snap, target)

    def unmount(self, snap: SnapshotRef, target: Path) -> None:
        """Unmount ``target``; a committed snapshot's device goes down again when idle."""
        super().unmount(snap, target)
        snap_id = snap.id
        if snap_id in self._transient:
            # A committed layer stays deactivated, so snapshotting it needs no suspend.
            with self.pool.locked(), contextlib.suppress(errors.Busy):  # mounted elsewhere too
                udev.remove_device(
                    self._dev_name(snap_id), self.use_udev, deferred=False, retries=1
                )
            self._transient.discard(snap_id)

    @contextlib.contextmanager
    def _active(self, sid: str, rec: DeviceRecord) -> Iterator[str]:
        """The device of ``sid`` activated for the block (and deactivated after, if it was not)."""
        name = self._dev_name(sid)
        was_active = dmsetup.info(name) is not None
        node = self._activate(sid, rec)
        try:
            yield node
        finally:
            if not was_active:
                with self.pool.locked(), contextlib.suppress(errors.Busy):
                    udev.remove_device(name, self.use_udev, deferred=False, retries=1)

    def _inodes_of(self, sid: str) -> int:
        """Inodes used by the filesystem of committed (or base) ``sid``, measured once."""
        rec = self._record(sid, sid)
        if rec.inodes < 0:
            with self._active(sid, rec) as node:
                used = fsinfo.used_inodes(node, self.config.fs, self.home / "probe")
            rec = dataclasses.replace(rec, inodes=used)
            self.journal.put_device(sid, rec)
        return rec.inodes

    def usage(self, snap: SnapshotRef) -> Usage:
        """Bytes the snapshot mapped beyond what it shared with its parent when made.

        dm-thin counts a block rewritten after the snapshot (copy-on-write)
        as remapped, not as new, so this counts newly mapped blocks; it is
        exact for data written into space the parent never used. Inodes are
        the filesystem's used inodes minus the parent's.
        """
        rec = self._record(snap.id, snap.key)
        with self._active(snap.id, rec) as node:
            mapped = parse_thin(dmsetup.status(self._dev_name(snap.id)), node).mapped_sectors
            used = fsinfo.used_inodes(node, self.config.fs, self.home / "probe")
        self.journal.put_device(snap.id, dataclasses.replace(rec, inodes=used, mapped=mapped))
        parent_used = self._inodes_of(snap.parents[0] if snap.parents else BASE)
        return Usage(size=max(0, mapped - rec.shared) * 512, inodes=max(0, used - parent_used))

    # -- facts and upkeep ---------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Pool usage and health, the pool's name, and how devices are made."""
        st = self.pool.status()
        return {
            "driver": self.name,
            "pool": self.pool.name,
            "pool_owned": self.pool.owned,
            "loopback": self.opts.loopback,
            "fs": self.config.fs,
            "udev": self.use_udev,
            "device_prefix": self.config.prefix,
            "thin_id_range": [self.config.range_base, self.config.range_base + RANGE - 1],
            "devices": len(self.journal.devices()),
            "pool_status": st.as_dict(),
            "data_used_bytes": st.data_used * self.opts.block_size,
            "data_total_bytes": st.data_total * self.opts.block_size,
            "metadata_used_bytes": st.meta_used * 4096,
            "metadata_total_bytes": st.meta_total * 4096,
        }

    def check(self, known_ids: set[str], repair: bool) -> list[str]:
        """Find thin devices and dm devices no snapshot owns (and remove them if ``repair``)."""
        problems: list[str] = []
        with self.pool.locked():
            for sid, rec in sorted(self.journal.devices().items()):
                if sid == BASE:
                    continue
                if sid not in known_ids:
                    problems.append(
                        f"thin id {rec.thin} belongs to no snapshot (id {sid}); repair deletes it"
                    )
                    if repair:
                        self._deactivate(sid, sid, deferred=False, discard=True)
                        self._transact_delete(sid, rec)
                elif not self.pool.exists(rec.thin):
                    problems.append(
                        f"snapshot id {sid} names thin id {rec.thin}, missing from pool "
                        f"{self.pool.name}; repair drops the record (the snapshot's data is lost)"
                    )
                    if repair:
                        self.state.delete(f"dev/{sid}")
            records = self.journal.devices()
            for name in dmsetup.ls():
                owner = self._sid_of(name)
                if owner is not None and owner not in records:
                    problems.append(f"device {name} has no record; repair removes it")
                    if repair:
                        udev.remove_device(name, self.use_udev, deferred=True)
        return problems

    def close(self) -> None:
        """As the store's last user: deactivate its idle devices, and a pool it built if idle.

        While another process has the store open, everything stays up: its
        devices may be activated for a mount about to happen.
        """
        if not hasattr(self, "config") or self._users < 0:
            return
        fd, self._users = self._users, -1
        try:
            if not _last_user(fd):
                return
            for name in dmsetup.ls():
                if self._sid_of(name) is None:
                    continue
                with contextlib.suppress(errors.Busy):  # still mounted: leave it
                    udev.remove_device(name, self.use_udev, deferred=False, retries=1)
            self.pool.close()
        finally:
            os.close(fd)


def _join_users(home: Path) -> int:
    """Hold ``home/users.lock`` shared for as long as the driver is open; return the fd."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / "users.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits while a last user is taking things down
    except OSError as exc:
        os.close(fd)
        raise errors.from_oserror(exc, f"lock {home / 'users.lock'}") from exc
    return fd


def _last_user(fd: int) -> bool:
    """True when no other process has the store open (``fd`` is then held exclusively)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _load_module() -> None:
    if "thin-pool" in dmsetup.targets():
        return
    try:
        run(["modprobe", "dm-thin-pool"], timeout=30)
    except (CommandFailed, errors.Unsupported) as exc:
        raise errors.Unsupported(f"devmapper driver: cannot load dm-thin-pool: {exc}") from exc
