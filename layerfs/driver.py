"""The storage-driver interface: what the store asks of a driver.

Layering: the store (``layerfs.Store``) owns the metadata database, the
snapshot graph, keys, labels, intents and crash recovery. A driver owns
bytes on disk (directories, loop files, thin devices) under its *home*
directory, ``<store root>/<driver name>``, and nothing else.

The store names each snapshot's storage by an *id*: a decimal string that
is never reused within a store, even after removal. The driver keys all of
its storage by that id and never sees user keys except in messages.

Every snapshot the driver is asked about arrives as a ``SnapshotRef``
carrying its id, kind and the ids of its committed ancestors (nearest
first), so the driver needs no graph of its own.

Beyond the required methods a driver may offer two shortcuts, and says
which in its ``capabilities`` (a ``Capabilities`` value); the store calls
``direct_path`` and ``diff_dir`` only on a driver that declares them:

- ``direct_path``: snapshot trees that are plain directories, used
  without mounting anything (``copy``; ``overlay`` for a base snapshot);
- ``diff_dir``: every snapshot's own changes as an overlay-format
  directory, so layers are applied and exported without comparing trees
  (``overlay`` when the kernel writes plain diffs, ``fuse``).

Crash contract. The store records an intent in its database before it
calls ``create``, ``commit`` or ``remove`` and clears it afterwards. After a
crash, on the next open, it calls ``remove(id)`` for a snapshot whose
create was interrupted and again for one whose removal was interrupted,
and ``commit`` again for one whose commit was interrupted. So:

- ``remove`` must accept a half-created or already-removed snapshot;
- ``commit`` must be idempotent;
- ``create`` may assume the id is new to it.

A third-party driver is one subclass of ``Driver`` registered in the
entry-point group ``layerfs.drivers`` under its name.
"""

from __future__ import annotations

import abc
import dataclasses
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import ClassVar, Protocol

from . import errors
from ._mounting import mount_one, unmount_all, unmount_path
from ._sys.fsops import syncfs
from ._types import Kind, Mount, Usage

__all__ = ["Driver", "SnapshotRef", "DiffDir", "DriverState", "Capabilities"]


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """The optional methods a driver implements (see the module docstring).

    Attributes:
        direct_path: ``direct_path`` may give a snapshot's tree as a plain
            directory; the store then skips the mount when it can.
        diff_dir: ``diff_dir`` gives the changes of every snapshot, so layer
            apply, export and changes take the native path.
    """

    direct_path: bool = False
    diff_dir: bool = False


@dataclasses.dataclass(frozen=True)
class SnapshotRef:
    """One snapshot as a driver sees it.

    Attributes:
        id: the storage id (decimal string, never reused in a store).
        key: the user's key or name, for error messages only.
        kind: ACTIVE (read-write), VIEW (read-only) or COMMITTED.
        parents: ids of the committed ancestors, nearest first.
    """

    id: str
    key: str
    kind: Kind
    parents: tuple[str, ...] = ()

    @property
    def readonly(self) -> bool:
        """True for views and committed snapshots."""
        return self.kind is not Kind.ACTIVE


@dataclasses.dataclass(frozen=True)
class DiffDir:
    """A directory holding a snapshot's own changes in overlayfs format.

    Whiteouts are character devices 0/0, opaque directories carry the
    ``<xattr_prefix>overlay.opaque`` xattr set to ``y``. The store writes
    layer tars straight into it (``apply``) and reads changes straight out
    of it (``changes``, ``export``) instead of comparing whole trees.

    Attributes:
        path: the directory (overlay's ``upperdir``).
        xattr_prefix: ``"trusted."`` when privileged, ``"user."`` when not.
    """

    path: Path
    xattr_prefix: str = "trusted."

    @property
    def opaque_xattr(self) -> str:
        """The full name of the opaque-directory xattr."""
        return self.xattr_prefix + "overlay.opaque"


class DriverState(Protocol):
    """A small key-value store inside the store's database, for drivers.

    Lets a driver keep its own records (device ids, a transaction journal)
    in the same SQLite file and the same crash domain as the snapshot
    metadata, instead of a second database that drifts apart after a crash.
    Keys are scoped to the driver.
    """

    def get(self, name: str) -> str | None:
        """Return the value stored under ``name``, or None."""
        ...

    def put(self, name: str, value: str) -> None:
        """Store ``value`` under ``name`` (its own transaction unless inside one)."""
        ...

    def delete(self, name: str) -> None:
        """Remove ``name``; missing is fine."""
        ...

    def items(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """Yield ``(name, value)`` for names starting with ``prefix``, sorted."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Group several puts and deletes into one atomic write."""
        ...


class Driver(abc.ABC):
    """Base class of storage drivers. Subclass it and register an entry point.

    Args:
        home: the directory this driver owns (created by the store).
        options: driver options as given to ``Store(options=...)``; a driver
            validates them here and raises ``InvalidArgument`` for bad ones.
        state: the driver's key-value records in the store's database.
    """

    #: The registered name ("overlay", "copy", ...).
    name: ClassVar[str] = ""

    #: What this driver offers beyond the required methods. A driver whose
    #: answer depends on the machine (overlay's probes) sets it in ``__init__``.
    capabilities: Capabilities = Capabilities()

    def __init__(self, home: Path, options: Mapping[str, str], state: DriverState) -> None:
        self.home = Path(home)
        self.options = dict(options)
        self.state = state

    # -- discovery -----------------------------------------------------------

    @classmethod
    def unavailable_reason(cls, root: Path) -> str | None:
        """Say why this driver cannot run for a store at ``root`` on this machine.

        Returns:
            None when the driver can be used, else a one-line reason
            ("kernel has no overlay filesystem"). Used by ``layerfs.open()``
            to pick a default driver and by the bench to explain a missing
            column. Must be cheap and must not create anything.
        """
        return None

    # -- storage ---------------------------------------------------------------

    @abc.abstractmethod
    def create(self, snap: SnapshotRef) -> None:
        """Allocate storage for a new active snapshot or view on ``snap.parents``."""

    @abc.abstractmethod
    def commit(self, snap: SnapshotRef) -> None:
        """Freeze an active snapshot (``snap.kind`` is already COMMITTED). Idempotent."""

    @abc.abstractmethod
    def remove(self, snap_id: str) -> None:
        """Release all storage of ``snap_id``. Idempotent; accepts half-made storage."""

    @abc.abstractmethod
    def mounts(self, snap: SnapshotRef) -> list[Mount]:
        """Return the mounts that give the snapshot's tree (rw for ACTIVE, ro otherwise).

        They must be usable with plain ``mount(2)`` by a caller.
        """

    @abc.abstractmethod
    def usage(self, snap: SnapshotRef) -> Usage:
        """Return the disk used by the snapshot's own storage, not its parents'."""

    def sync(self, snap: SnapshotRef) -> None:
        """Make the snapshot's storage durable: called before it is marked committed.

        The default syncs the filesystem holding the driver's home
        (``syncfs(2)``), where directory-based drivers keep their trees.
        A driver whose commit already flushes its storage (unmounting a
        block device does) may override it with less.
        """
        syncfs(self.home)

    # -- mounting ---------------------------------------------------------------

    def mount(self, snap: SnapshotRef, target: Path) -> None:
        """Mount the snapshot on ``target`` (an existing empty directory).

        The default applies ``self.mounts(snap)`` in order with ``mount(2)``.
        Drivers override it to use a better API (overlay's ``fsopen``) or to
        start a server (fuse).
        """
        done = 0
        try:
            for m in self.mounts(snap):
                mount_one(m, str(target))
                done += 1
        except BaseException:
            for _ in range(done):
                unmount_path(str(target))
            raise

    def unmount(self, snap: SnapshotRef, target: Path) -> None:
        """Undo ``mount(snap, target)``: detach lazily (``MNT_DETACH``). Idempotent.

        ``snap`` is the snapshot that was mounted there, as ``mount`` got it.
        """
        unmount_all(str(target))

    # -- optional shortcuts (declared in ``capabilities``) -------------------------

    def direct_path(self, snap: SnapshotRef) -> Path | None:
        """A directory holding the snapshot's whole tree without any mount.

        Called only when ``capabilities.direct_path``. It lets
        ``Store.mount`` skip the mount when the caller did not ask for a
        target, and lets ``apply`` and ``changes`` work without privileges.

        Returns:
            The directory, or None for a snapshot that has none. None is an
            answer about this one snapshot, not about the driver: overlay has
            a plain directory only for a snapshot without parents, so the
            store cannot know before asking.

        Raises:
            errors.Unsupported: the driver does not declare the capability.
        """
        raise errors.Unsupported(
            f"driver {self.name!r} keeps no snapshot as a plain directory; "
            "check capabilities.direct_path before calling direct_path"
        )

    def diff_dir(self, snap: SnapshotRef) -> DiffDir:
        """The snapshot's own changes in overlay format (its upper dir).

        Called only when ``capabilities.diff_dir``; declare it only when the
        directory is exactly each snapshot's diff against its parent (for
        overlay: no redirect_dir or metacopy entries), so the store can
        apply and export layers without comparing trees.

        Raises:
            errors.Unsupported: the driver does not declare the capability.
        """
        raise errors.Unsupported(
            f"driver {self.name!r} has no overlay-format diff directories; "
            "check capabilities.diff_dir before calling diff_dir"
        )

    # -- facts and upkeep ------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Return driver facts: probes, versions, pool usage. JSON-serialisable."""
        return {"driver": self.name}

    def check(self, known_ids: set[str], repair: bool) -> list[str]:
        """Find storage that belongs to no known snapshot id (and remove it if ``repair``).

        Returns:
            One line per problem, saying what it is and what repair does.
        """
        return []

    def close(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Release process resources (threads, fds). Idempotent."""


def is_privileged() -> bool:
    """True when running as root in the initial user namespace."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            first = f.read().split()
        return first[:3] == ["0", "0", "4294967295"]
    except OSError:
        return True
