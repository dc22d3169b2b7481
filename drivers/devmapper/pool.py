"""The thin pool: finding or building it, its health, and its messages.

Facts about dm-thin this relies on (kernel Documentation/admin-guide/
device-mapper/thin-provisioning.rst):

- The pool keeps thin devices by 24-bit *device id*. ``create_thin <id>``
  makes an empty one, ``create_snap <id> <origin id>`` a copy-on-write copy
  of another (the origin, if active, must be suspended around the message
  so its in-flight writes are in the snapshot), ``delete <id>`` frees one.
  A used id gives EEXIST, a missing one ENODATA.
- Each message is committed to the pool's metadata before dmsetup returns,
  so a process killed between two messages leaves the first one done.
- ``set_transaction_id <old> <new>`` fails with EINVAL unless the pool's
  current id is ``<old>``: a compare-and-swap that also marks "this store's
  transaction reached the pool".
- A new pool on a metadata device whose first 4 KiB are zero formats it;
  otherwise the kernel opens the existing metadata, so re-creating the
  pool table on the same devices brings every thin device back. Existing
  metadata starts with a superblock holding the magic number 27022010
  (little-endian 64 bits at byte 32, after checksum, flags, block number
  and uuid; ``persistent-data/dm-thin-metadata.c``): a new store never
  wipes such a device unless told to (``reformat``), nor one that is open
  exclusively (a live pool's devices are held so by dm).
- With the ``error_if_no_space`` feature a full pool fails writes with
  ENOSPC instead of queueing them for 60 s (the writer would hang).
- A loop device detached while dm holds it open is only marked
  auto-clear; it goes away when the pool is removed, so nothing leaks.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from layerfs import errors
from layerfs._environment import loop_device_problem
from layerfs._run import CommandFailed, run

from . import dmsetup, faults, udev
from .options import DevmapperOptions
from .status import PoolStatus, parse_pool

__all__ = ["Pool"]

log = logging.getLogger(__name__)

_LOCK_DIR = "/run/layerfs"


class Pool:
    """A thin pool device and the messages this driver sends it.

    Args:
        name: the pool's dm name.
        owned: the driver built it (so it may take it down on close).
        use_udev: how device nodes are made (see ``udev.py``).
    """

    def __init__(self, name: str, *, owned: bool, use_udev: bool) -> None:
        self.name = name
        self.owned = owned
        self.use_udev = use_udev
        self.path = udev.node_path(name)

    # -- finding or building ---------------------------------------------------

    @classmethod
    def open(
        cls, home: Path, opts: DevmapperOptions, pool_name: str, fresh: bool, use_udev: bool
    ) -> Pool:
        """Return the pool for these options, building it when it is not active.

        Args:
            home: the driver's home (loop files live in ``home/pool``).
            pool_name: the dm name to build a pool under (ignored for ``opts.pool_name``).
            fresh: the store is new, so a metadata device may be wiped.

        Raises:
            errors.NotFound: the named pool or a given block device is missing.
            errors.InvalidArgument: the named device is not a thin-pool.
        """
        if opts.pool_name is not None:
            pool = cls(opts.pool_name, owned=False, use_udev=use_udev)
            if dmsetup.info(opts.pool_name) is None:
                raise errors.NotFound(
                    f"thin pool {opts.pool_name} does not exist; create it or fix option pool_name"
                )
            pool.status()  # raises InvalidArgument when it is not a thin-pool
            return pool
        pool = cls(pool_name, owned=True, use_udev=use_udev)
        # Several processes may open the store at once: one builds, the others find it.
        with pool.locked():
            if dmsetup.info(pool_name) is not None:
                pool.status()
                return pool
            pool._build(home, opts, fresh)
        return pool

    def _build(self, home: Path, opts: DevmapperOptions, fresh: bool) -> None:
        """Build this (owned) pool on loop files or on the given block devices."""
        if opts.loopback:
            self._build_on_loops(home / "pool", opts, fresh)
        else:
            assert opts.data_device is not None and opts.metadata_device is not None
            for dev in (opts.data_device, opts.metadata_device):
                if not os.path.exists(dev):
                    raise errors.NotFound(
                        f"block device {dev} does not exist; fix option data_device/metadata_device"
                    )
            if fresh:
                _refuse_pool_in_use(opts.metadata_device, opts.data_device, opts.reformat)
                _zero_head(opts.metadata_device)
            self._create_table(
                opts.metadata_device, opts.data_device, _size_of(opts.data_device), opts
            )

    def _build_on_loops(self, where: Path, opts: DevmapperOptions, fresh: bool) -> None:
        log.warning(
            "devmapper: thin pool %s on loop files in %s: loopback pools are for testing, "
            "give data_device and metadata_device (or pool_name) for real use",
            self.name,
            where,
        )
        data, meta = where / "data", where / "metadata"
        if fresh:
            where.mkdir(parents=True, exist_ok=True)
            for path, size in ((data, opts.data_size), (meta, opts.metadata_size)):
                with open(path, "wb") as f:
                    f.truncate(size)
        elif not (data.exists() and meta.exists()):
            raise errors.Corrupt(f"the loop files of pool {self.name} are missing from {where}")
        data_loop = _losetup(data)
        try:
            meta_loop = _losetup(meta)
        except BaseException:
            _detach(data_loop)
            raise
        try:
            self._create_table(meta_loop, data_loop, data.stat().st_size, opts)
        finally:
            # Held open by the pool, the loops are only marked auto-clear here;
            # they go away with the pool.
            _detach(data_loop)
            _detach(meta_loop)

    def _create_table(
        self, meta_dev: str, data_dev: str, data_bytes: int, opts: DevmapperOptions
    ) -> None:
        features = ["error_if_no_space"]
        if opts.skip_block_zeroing:
            features.append("skip_block_zeroing")
        sectors = data_bytes // opts.block_size * opts.block_sectors
        table = (
            f"0 {sectors} thin-pool {meta_dev} {data_dev} {opts.block_sectors} 0 "
            f"{len(features)} {' '.join(features)}"
        )
        udev.create_device(self.name, table, self.use_udev)

    def close(self) -> None:
        """Take down a pool this driver built, unless something still uses it."""
        if not self.owned:
            return
        if dmsetup.info(self.name) is None:
            return
        with contextlib.suppress(errors.Busy):  # thin devices still use it
            udev.remove_device(self.name, self.use_udev, deferred=False, retries=1)

    # -- health ----------------------------------------------------------------

    def status(self) -> PoolStatus:
        """Parse and return the pool's status line."""
        return parse_pool(dmsetup.status(self.name), self.name)

    def check_writable(self, min_free_percent: float, what: str) -> PoolStatus:
        """Refuse to add a device to a pool that is failed, read-only, full or low.

        Raises:
            errors.Corrupt: the pool failed or needs ``thin_check``.
            errors.FailedPrecondition: the pool is read-only.
            errors.NoSpace: out of data space, or below the free-space floor.
        """
        st = self.status()
        if st.failed:
            raise errors.Corrupt(
                f"{what}: thin pool {self.name} has failed; check its devices and kernel log"
            )
        if st.needs_check:
            raise errors.Corrupt(
                f"{what}: thin pool {self.name} needs a metadata check; deactivate it and run thin_check"
            )
        if st.mode == "out_of_data_space":
            raise errors.NoSpace(
                f"{what}: thin pool {self.name} is out of data space; grow it or remove snapshots"
            )
        if st.mode != "rw":
            raise errors.FailedPrecondition(
                f"{what}: thin pool {self.name} is {st.mode}; repair or grow it, then reload it read-write"
            )
        data_free, meta_free = st.data_free_percent(), st.meta_free_percent()
        if min(data_free, meta_free) < min_free_percent:
            raise errors.NoSpace(
                f"{what}: thin pool {self.name} has {data_free:.1f}% data and {meta_free:.1f}% "
                f"metadata free, below the {min_free_percent:g}% floor (min_free_percent); "
                "remove snapshots or grow the pool"
            )
        return st

    # -- messages --------------------------------------------------------------

    def _message(self, text: str) -> None:
        dmsetup.message(self.name, text)

    def create_thin(self, thin_id: int) -> None:
        """Create empty thin device ``thin_id`` (AlreadyExists when taken)."""
        self._message(f"create_thin {thin_id}")

    def create_snap(self, thin_id: int, origin_id: int, origin_name: str | None) -> None:
        """Snapshot ``origin_id`` as ``thin_id``, suspending ``origin_name`` if active."""
        origin = dmsetup.info(origin_name) if origin_name else None
        if origin is None or origin.suspended:
            self._message(f"create_snap {thin_id} {origin_id}")
            return
        assert origin_name is not None
        dmsetup.suspend(origin_name)
        try:
            faults.point("create-suspended")
            self._message(f"create_snap {thin_id} {origin_id}")
        finally:
            dmsetup.resume(origin_name, udev=self.use_udev)

    def delete(self, thin_id: int) -> None:
        """Delete thin device ``thin_id``; a missing id is fine."""
        with contextlib.suppress(errors.NotFound):
            self._message(f"delete {thin_id}")

    def exists(self, thin_id: int) -> bool:
        """Whether the pool has thin device ``thin_id``.

        dm-thin has no message that lists ids, so this tries to create it
        and deletes it again when that worked. Only call it for ids this
        store owns.
        """
        try:
            self.create_thin(thin_id)
        except errors.AlreadyExists:
            return True
        self.delete(thin_id)
        return False

    def set_transaction_id(self, old: int, new: int) -> None:
        """Compare-and-swap the pool's transaction id.

        Raises:
            errors.FailedPrecondition: the pool's id is not ``old``.
        """
        try:
            self._message(f"set_transaction_id {old} {new}")
        except errors.InvalidArgument as exc:
            raise errors.FailedPrecondition(
                f"thin pool {self.name}: transaction id is not {old}; another writer changed it"
            ) from exc

    def thin_table(self, thin_id: int, size: int) -> str:
        """The dm table of thin device ``thin_id`` of ``size`` bytes."""
        return f"0 {size // 512} thin {self.path} {thin_id}"

    # -- locking -----------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the host-wide lock of this pool (stores sharing it take turns)."""
        os.makedirs(_LOCK_DIR, exist_ok=True)
        fd = os.open(os.path.join(_LOCK_DIR, f"{self.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _losetup(path: Path) -> str:
    problem = loop_device_problem()
    if problem is not None:
        raise errors.Unsupported(f"a thin pool on loop files needs loop devices, but {problem}")
    try:
        return run(["losetup", "--find", "--show", str(path)], timeout=30).strip()
    except CommandFailed as exc:
        raise errors.Unsupported(f"cannot attach loop device for {path}: {exc.stderr}") from exc


def _detach(dev: str) -> None:
    with contextlib.suppress(CommandFailed):
        run(["losetup", "--detach", dev], timeout=30)


#: THIN_SUPERBLOCK_MAGIC and where it sits in the metadata superblock.
THIN_MAGIC = 27022010
_MAGIC_OFFSET = 32


def holds_pool_metadata(dev: str) -> bool:
    """True when ``dev`` starts with a thin-pool metadata superblock."""
    try:
        fd = os.open(dev, os.O_RDONLY)
        try:
            head = os.pread(fd, _MAGIC_OFFSET + 8, 0)
        finally:
            os.close(fd)
    except OSError as exc:
        raise errors.from_oserror(exc, f"read metadata device {dev}") from exc
    if len(head) < _MAGIC_OFFSET + 8:
        return False
    return int.from_bytes(head[_MAGIC_OFFSET:], "little") == THIN_MAGIC


def _refuse_pool_in_use(meta_dev: str, data_dev: str, reformat: bool) -> None:
    """Refuse to wipe devices a live pool holds, or (without ``reformat``) old pool metadata.

    Raises:
        errors.Busy: a device is open exclusively (a live pool, a mount).
        errors.FailedPrecondition: the metadata device holds a pool already.
    """
    for dev in (meta_dev, data_dev):
        try:
            fd = os.open(dev, os.O_RDONLY | os.O_EXCL)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                raise errors.Busy(
                    f"block device {dev} is in use (a live thin pool of another store, or "
                    "mounted); refusing to build a new pool on it: give this store that "
                    "pool's pool_name, or other devices"
                ) from exc
            raise errors.from_oserror(exc, f"open block device {dev}") from exc
        os.close(fd)
    if holds_pool_metadata(meta_dev) and not reformat:
        raise errors.FailedPrecondition(
            f"metadata device {meta_dev} already holds a thin pool's metadata (a pool made "
            "before, maybe by a store whose database was lost); wiping it destroys every thin "
            "device in it. Open the store that made it, or set option reformat=true to wipe it"
        )


def _zero_head(dev: str) -> None:
    """Zero the first 4 KiB of a new pool's metadata device so the kernel formats it."""
    try:
        fd = os.open(dev, os.O_WRONLY)
        try:
            os.write(fd, bytes(4096))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise errors.from_oserror(exc, f"wipe metadata device {dev}") from exc


def _size_of(dev: str) -> int:
    try:
        fd = os.open(dev, os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    except OSError as exc:
        raise errors.from_oserror(exc, f"size of block device {dev}") from exc
