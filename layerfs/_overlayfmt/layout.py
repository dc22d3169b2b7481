"""The driver home of an overlay-format driver, shared by ``overlay`` and ``fuse``.

Both drivers keep snapshots in overlayfs format, so a layer written through
one mounts under the other. Under the driver home::

    snapshots/<id>/fs     upper dir of an active snapshot; the plain tree of a base layer
    snapshots/<id>/work   overlay's workdir, active snapshots only (same filesystem as fs)
    snapshots/<id>/link   the snapshot's short link name, one line
    l/<short>             symlink -> ../snapshots/<id>/fs
    trash/                snapshots being removed (renamed here first)

The short links keep ``lowerdir=`` strings small: ``l/ABCDEFGH`` is 10
bytes per layer whatever the id or home path, which is what lets a long
chain fit in the single page that ``mount(2)`` copies for its options.

Creation builds in ``snapshots/.create-<id>-<random>`` and renames into
place, so a snapshot dir either exists whole or not at all; the short link
is made before the rename and may dangle after a crash, which ``check``
reports. Removal renames the snapshot dir into ``trash/`` first, so a
removed id vanishes atomically even when deleting its files fails (a mount
leaked into another mount namespace can pin a directory with ``EBUSY``);
what stays in ``trash/`` is retried by later removals and ``check``.
"""

from __future__ import annotations

import base64
import os
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from layerfs import errors
from layerfs._sys.tree import remove_tree
from layerfs._types import Kind, Usage
from layerfs.driver import DiffDir, DriverState, SnapshotRef, is_privileged

__all__ = [
    "Layout",
    "OVERLAY_MAX_LOWERS",
    "xattr_prefix",
    "escape_option_path",
    "rmtree",
]

#: overlayfs refuses more lower layers than this (OVL_MAX_STACK in fs/overlayfs).
OVERLAY_MAX_LOWERS = 500

_LINK_BYTES = 5  # 40 random bits -> 8 base32 characters
_CREATE_PREFIX = ".create-"


def _new_link_name() -> str:
    return base64.b32encode(secrets.token_bytes(_LINK_BYTES)).decode().rstrip("=")


def escape_option_path(path: str) -> str:
    """Escape a path for a ``mount(2)`` overlay option string.

    overlayfs splits its options on ``,`` and ``lowerdir`` on ``:``; both
    (and the backslash) can be escaped with a backslash.
    """
    return path.replace("\\", "\\\\").replace(",", "\\,").replace(":", "\\:")


def xattr_prefix(state: DriverState) -> str:
    """Return the overlay xattr namespace of this store, deciding it on first use.

    ``trusted.`` needs CAP_SYS_ADMIN in the initial user namespace, so an
    unprivileged store uses ``user.`` (overlay's ``userxattr`` option, kernel
    5.11+). The choice is recorded in the store's database at first open and
    reused afterwards, so layers written by one process stay readable by the
    next, whatever its privileges.

    Returns:
        ``"trusted."`` or ``"user."``.
    """
    recorded = state.get("xattr_prefix")
    if recorded in ("trusted.", "user."):
        return recorded
    prefix = "trusted." if is_privileged() else "user."
    state.put("xattr_prefix", prefix)
    return prefix


def rmtree(path: Path) -> list[str]:
    """Delete ``path`` recursively, doing as much as it can (see ``_sys.tree``).

    Returns:
        One line per path it could not delete (empty when all is gone).
    """
    failed: list[str] = []

    def note(where: str | bytes, exc: OSError) -> None:
        failed.append(f"{os.fsdecode(where)}: {exc.strerror}")

    remove_tree(path, on_error=note)
    return failed


class Layout:
    """Paths and storage operations of an overlay-format driver home.

    Args:
        home: the driver's home directory (it and its subfolders are created
            on demand by ``ensure``).
    """

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.snapshots = self.home / "snapshots"
        self.links = self.home / "l"
        self.trash = self.home / "trash"
        # Ids are never reused, so a link name read once stays right until
        # the id is removed (or check() recreates its link).
        self._names: dict[str, str] = {}

    def ensure(self) -> None:
        """Create the top-level folders if missing."""
        for d in (self.snapshots, self.links, self.trash):
            d.mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------

    def snapshot_dir(self, snap_id: str) -> Path:
        """``snapshots/<id>``."""
        return self.snapshots / snap_id

    def fs_dir(self, snap_id: str) -> Path:
        """``snapshots/<id>/fs``: the upper dir, or the whole tree of a base layer."""
        return self.snapshots / snap_id / "fs"

    def fs_path(self, snap_id: str) -> str:
        """``fs_dir`` as a string, built cheaply (long chains call it per layer)."""
        return f"{self.snapshots}/{snap_id}/fs"

    def work_dir(self, snap_id: str) -> Path:
        """``snapshots/<id>/work``: overlay's workdir."""
        return self.snapshots / snap_id / "work"

    def link_name(self, snap_id: str) -> str:
        """Return the short link name of ``snap_id``.

        Raises:
            errors.Corrupt: the snapshot has no readable link file.
        """
        name = self._names.get(snap_id)
        if name is not None:
            return name
        try:
            with open(f"{self.snapshots}/{snap_id}/link") as f:
                name = f.read().strip()
        except OSError as exc:
            raise errors.Corrupt(
                f"overlay snapshot {snap_id}: cannot read its short link name "
                f"({exc.strerror}); run check()"
            ) from exc
        if not name or "/" in name:
            raise errors.Corrupt(f"overlay snapshot {snap_id}: bad link name {name!r}")
        self._names[snap_id] = name
        return name

    def _read_link_name(self, snap_id: str | None) -> str:
        if snap_id is None:
            return ""
        try:
            return self.link_name(snap_id)
        except errors.Corrupt:
            return ""

    def link_path(self, snap_id: str) -> Path:
        """Absolute path of ``l/<short>`` for ``snap_id``."""
        return self.links / self.link_name(snap_id)

    def lowerdirs(self, snap: SnapshotRef, relative: bool = False) -> list[str]:
        """Return the lower layers of ``snap`` as short link paths, nearest first.

        A committed snapshot is its own top lower layer (it is mounted
        read-only on itself plus its parents); active snapshots and views
        have only their parents.

        Args:
            snap: the snapshot.
            relative: give paths relative to the home (``l/XXXXXXXX``), for a
                ``mount(2)`` done with the home as working directory.
        """
        ids = self.lower_ids(snap)
        base = "l" if relative else str(self.links)
        return [f"{base}/{self.link_name(i)}" for i in ids]

    @staticmethod
    def lower_ids(snap: SnapshotRef) -> list[str]:
        """Ids of the lower layers of ``snap`` (itself first when committed)."""
        if snap.kind is Kind.COMMITTED:
            return [snap.id, *snap.parents]
        return list(snap.parents)

    def overlay_options(self, snap: SnapshotRef, relative: bool = False) -> list[str]:
        """Return ``lowerdir=``, and for an active snapshot ``upperdir=``/``workdir=``.

        Paths are escaped for a ``mount(2)`` option string. Other options
        (``index=off``, ``userxattr``...) are the caller's.

        Args:
            snap: the snapshot.
            relative: paths relative to the home (see ``lowerdirs``).
        """
        lowers = ":".join(escape_option_path(p) for p in self.lowerdirs(snap, relative))
        opts = [f"lowerdir={lowers}"]
        if snap.kind is Kind.ACTIVE:
            upper = self.fs_dir(snap.id)
            work = self.work_dir(snap.id)
            if relative:
                upper = upper.relative_to(self.home)
                work = work.relative_to(self.home)
            opts.append(f"upperdir={escape_option_path(str(upper))}")
            opts.append(f"workdir={escape_option_path(str(work))}")
        return opts

    # -- storage ------------------------------------------------------------------

    def create(self, snap: SnapshotRef) -> None:
        """Make ``snapshots/<id>/{fs,work,link}`` and the short link ``l/<short>``.

        Built in a staging dir and renamed into place.

        Raises:
            errors.AlreadyExists: storage for this id exists already.
            errors.NotFound: a parent has no storage.
        """
        self.ensure()
        final = self.snapshot_dir(snap.id)
        if os.path.lexists(final):
            raise errors.AlreadyExists(
                f"overlay snapshot {snap.key!r} (id {snap.id}): storage exists already; "
                "run check(repair=True)"
            )
        # The nearest parent is enough: each layer checked its own when it was made.
        if snap.parents and not os.path.isdir(self.fs_path(snap.parents[0])):
            raise errors.NotFound(
                f"overlay snapshot {snap.key!r}: parent layer {snap.parents[0]} has no "
                "storage; run check()"
            )
        staging = self.snapshots / f"{_CREATE_PREFIX}{snap.id}-{secrets.token_hex(4)}"
        try:
            staging.mkdir()
            (staging / "fs").mkdir(mode=0o755)
            if snap.kind is Kind.ACTIVE:  # only a writable overlay needs a workdir
                (staging / "work").mkdir(mode=0o700)
            name = self._make_link(snap.id)
            (staging / "link").write_text(name + "\n")
            try:
                os.rename(staging, final)
            except OSError:
                self._unlink_link(name, snap.id)
                raise
        except OSError as exc:
            rmtree(staging)
            raise errors.from_oserror(
                exc, f"create overlay storage for {snap.key!r} (id {snap.id})"
            ) from exc

    def _make_link(self, snap_id: str) -> str:
        target = f"../snapshots/{snap_id}/fs"
        for _ in range(32):
            name = _new_link_name()
            try:
                os.symlink(target, self.links / name)
                return name
            except FileExistsError:
                continue
        raise errors.LayerfsError(f"no free short link name in {self.links} after 32 tries")

    def _unlink_link(self, name: str, snap_id: str) -> None:
        path = self.links / name
        try:
            if os.readlink(path) == f"../snapshots/{snap_id}/fs":
                os.unlink(path)
        except OSError:
            pass

    def remove(self, snap_id: str) -> list[str]:
        """Release the storage of ``snap_id``. Idempotent; accepts half-made storage.

        The snapshot dir is renamed into ``trash/`` (atomic), its short link
        removed, then the trash entry deleted as far as possible; leftovers
        (pinned by a mount in another namespace) are retried later.

        Returns:
            Paths that could not be deleted yet (already out of the snapshot's
            name; ``check`` retries them).
        """
        self.ensure()
        self._names.pop(snap_id, None)
        left: list[str] = []
        for staging in self.snapshots.glob(f"{_CREATE_PREFIX}{snap_id}-*"):
            left += self._discard(staging, snap_id)
        final = self.snapshot_dir(snap_id)
        if os.path.lexists(final):
            left += self._discard(final, snap_id)
        else:
            self._drop_links_to(snap_id)
        self.empty_trash()
        return left

    def _discard(self, path: Path, snap_id: str) -> list[str]:
        try:
            name = (path / "link").read_text().strip()
        except OSError:
            name = ""
        if name:
            self._unlink_link(name, snap_id)
        else:
            self._drop_links_to(snap_id)
        dest = self.trash / f"{snap_id}-{secrets.token_hex(4)}"
        try:
            os.rename(path, dest)
        except OSError as exc:
            raise errors.from_oserror(exc, f"remove overlay storage of id {snap_id}") from exc
        return rmtree(dest)

    def _drop_links_to(self, snap_id: str) -> None:
        target = f"../snapshots/{snap_id}/fs"
        for link in self._iter_links():
            try:
                if os.readlink(link) == target:
                    os.unlink(link)
            except OSError:
                pass

    def _iter_links(self) -> Iterator[Path]:
        try:
            yield from (Path(e.path) for e in os.scandir(self.links))
        except FileNotFoundError:
            return

    def empty_trash(self) -> list[str]:
        """Delete what is left in ``trash/``; return what could not be deleted."""
        left: list[str] = []
        try:
            entries = list(os.scandir(self.trash))
        except FileNotFoundError:
            return left
        for e in entries:
            left += rmtree(Path(e.path))
        return left

    def ids(self) -> list[str]:
        """Ids that have a snapshot dir (staging dirs excluded)."""
        try:
            return sorted(e.name for e in os.scandir(self.snapshots) if not e.name.startswith("."))
        except FileNotFoundError:
            return []

    def usage(self, snap_id: str) -> Usage:
        """Disk used by the snapshot's own ``fs`` dir.

        Size counts allocated blocks (``st_blocks * 512``), so sparse files
        and reflinked extents are not inflated; hard links count once.
        The ``fs`` dir itself is not counted.
        """
        top = self.fs_dir(snap_id)
        seen: set[tuple[int, int]] = set()
        size = 0
        inodes = 0
        stack = [str(top)]
        while stack:
            d = stack.pop()
            try:
                it = os.scandir(d)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise errors.from_oserror(exc, f"usage of overlay snapshot {snap_id}") from exc
            with it:
                for e in it:
                    st = e.stat(follow_symlinks=False)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(e.path)
                    key = (st.st_dev, st.st_ino)
                    if st.st_nlink > 1:
                        if key in seen:
                            continue
                        seen.add(key)
                    size += st.st_blocks * 512
                    inodes += 1
        return Usage(size=size, inodes=inodes)

    def diff_dir(self, snap: SnapshotRef, prefix: str) -> DiffDir:
        """The snapshot's ``fs`` dir as a DiffDir with ``prefix`` for overlay xattrs."""
        return DiffDir(path=self.fs_dir(snap.id), xattr_prefix=prefix)

    def check(self, known_ids: Iterable[str], repair: bool) -> list[str]:
        """Find storage that belongs to no known id; delete it when ``repair``.

        Looks for orphan and half-made snapshot dirs, dangling or foreign
        short links, snapshots whose link is missing, and trash leftovers.

        Returns:
            One line per problem, saying what repair does (or did).
        """
        known = set(known_ids)
        problems: list[str] = []
        fix = "removed" if repair else "repair removes it"
        try:
            entries = sorted(os.scandir(self.snapshots), key=lambda e: e.name)
        except FileNotFoundError:
            entries = []
        for e in entries:
            if e.name.startswith(_CREATE_PREFIX):
                problems.append(f"half-made snapshot dir {e.path} (interrupted create): {fix}")
                if repair:
                    self._discard(Path(e.path), e.name[len(_CREATE_PREFIX) :].rsplit("-", 1)[0])
            elif e.name not in known:
                self._names.pop(e.name, None)
                problems.append(f"snapshot dir {e.path} belongs to no snapshot: {fix}")
                if repair:
                    self._discard(Path(e.path), e.name)
        for snap_id in sorted(known):
            d = self.snapshot_dir(snap_id)
            if not d.is_dir():
                problems.append(f"snapshot id {snap_id} has no storage at {d}")
                continue
            name = self._read_link_name(snap_id)
            target = f"../snapshots/{snap_id}/fs"
            link = self.links / name if name else None
            ok = link is not None and os.path.islink(link) and os.readlink(link) == target
            if not ok:
                what = "recreated" if repair else "repair recreates it"
                problems.append(f"snapshot id {snap_id} has no valid short link: {what}")
                if repair:
                    if link is not None:
                        self._unlink_link(name, snap_id)
                    new = self._make_link(snap_id)
                    (d / "link").write_text(new + "\n")
                    self._names[snap_id] = new
        for link in sorted(self._iter_links()):
            try:
                target = os.readlink(link)
            except OSError:
                continue
            parts = target.split("/")
            owner = parts[2] if len(parts) == 4 and parts[:2] == ["..", "snapshots"] else None
            good = owner in known and self._read_link_name(owner) == link.name
            if not good:
                problems.append(f"short link {link} -> {target} is dangling: {fix}")
                if repair:
                    try:
                        os.unlink(link)
                    except OSError:
                        pass
        try:
            trash = sorted(os.scandir(self.trash), key=lambda e: e.name)
        except FileNotFoundError:
            trash = []
        for e in trash:
            problems.append(f"leftover of a removed snapshot at {e.path}: {fix} when not busy")
            if repair:
                rmtree(Path(e.path))
        return problems
