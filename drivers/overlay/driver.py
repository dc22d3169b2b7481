"""The ``overlay`` driver: snapshots as kernel overlayfs layers.

A committed layer is a plain directory tree (its upper dir, frozen); an
active snapshot is an overlay of its parents with its own upper dir; a view
of one layer is a read-only bind mount of that layer, and a view of several
is a read-only overlay with no upper dir. See ``layerfs._overlayfmt`` for the files
on disk and ``probe`` for the kernel facts relied on.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Mapping
from pathlib import Path

from layerfs import errors
from layerfs._mounting import mount_one, unmount_all
from layerfs._overlayfmt.layout import OVERLAY_MAX_LOWERS, Layout, rmtree, xattr_prefix
from layerfs._sys import mount as sysmount
from layerfs._types import Kind, Mount, Usage
from layerfs.driver import Capabilities, DiffDir, Driver, DriverState, SnapshotRef

from . import mounting, probe

__all__ = ["OverlayDriver", "OverlayOptions"]

_VOLATILE_MARKER = ("work", "incompat", "volatile")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclasses.dataclass(frozen=True)
class OverlayOptions:
    """Options of the overlay driver, from ``Store(options={...})``.

    Attributes:
        volatile: mount active snapshots with ``volatile`` (no syncs; after a
            crash their contents may be incomplete). For throwaway snapshots.
        mount_api: ``auto`` (new mount API when the kernel has ``lowerdir+``),
            ``new`` (require it) or ``legacy`` (always ``mount(2)``).
    """

    volatile: bool = False
    mount_api: str = "auto"

    @classmethod
    def parse(cls, options: Mapping[str, str]) -> OverlayOptions:
        """Validate ``options``.

        Raises:
            errors.InvalidArgument: an unknown key or a bad value.
        """
        known = {"volatile", "mount_api"}
        unknown = sorted(set(options) - known)
        if unknown:
            raise errors.InvalidArgument(
                f"overlay driver: unknown option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        raw = str(options.get("volatile", "false")).lower()
        if raw not in _TRUE | _FALSE:
            raise errors.InvalidArgument(
                f"overlay driver: option volatile={raw!r} is not a boolean (use true or false)"
            )
        api = str(options.get("mount_api", "auto"))
        if api not in ("auto", "new", "legacy"):
            raise errors.InvalidArgument(
                f"overlay driver: option mount_api={api!r}; use auto, new or legacy"
            )
        return cls(volatile=raw in _TRUE, mount_api=api)


class OverlayDriver(Driver):
    """Kernel overlayfs snapshots.

    Args:
        home: the directory this driver owns.
        options: see ``OverlayOptions``.
        state: the driver's records in the store database (the xattr prefix).

    Raises:
        errors.InvalidArgument: bad options.
        errors.Unsupported: the backing filesystem cannot be overlay's upper
            (overlay or FUSE itself, no d_type), or ``mount_api=new`` asked on
            a kernel without ``lowerdir+``, or a ``trusted.`` store opened
            without privileges. Nothing is created in that case.
    """

    name = "overlay"

    def __init__(self, home: Path, options: Mapping[str, str], state: DriverState) -> None:
        super().__init__(home, options, state)
        self.opts = OverlayOptions.parse(options)
        problem = probe.backing_fs_problem(self.home)
        if problem:
            raise errors.Unsupported(f"overlay driver: {problem}")
        self.home.mkdir(parents=True, exist_ok=True)
        self.probes = probe.probe(self.home)
        if not self.probes.d_type:
            raise errors.Unsupported(
                f"overlay driver: the {self.probes.backing_fs} filesystem holding {self.home} "
                "has no d_type support, which overlayfs needs; reformat it "
                "(xfs: -n ftype=1, ext4: -O filetype) or use another store root"
            )
        if self.opts.mount_api == "new" and not self.probes.lowerdir_plus:
            raise errors.Unsupported(
                "overlay driver: mount_api=new needs overlay's 'lowerdir+' (Linux 6.8+); "
                f"this kernel is {self.probes.kernel}"
            )
        self.layout = Layout(self.home)
        self.layout.ensure()
        # A base snapshot is a plain directory; upper dirs are plain diffs
        # unless the kernel may write redirects or metacopy (see ``probe``).
        self.capabilities = Capabilities(direct_path=True, diff_dir=self.probes.native_diff)
        self.prefix = xattr_prefix(state)
        if self.prefix == "trusted." and not self.probes.privileged:
            raise errors.Unsupported(
                f"overlay store at {self.home} keeps trusted.overlay.* xattrs, which only root "
                "in the initial user namespace can use; open it as root"
            )

    @classmethod
    def unavailable_reason(cls, root: Path) -> str | None:
        """See ``Driver.unavailable_reason``: kernel, privileges, backing fs."""
        return probe.unavailable_reason(root)

    # -- option building ---------------------------------------------------------

    def _use_new_api(self) -> bool:
        return self.opts.mount_api != "legacy" and self.probes.lowerdir_plus

    def _flags(self, snap: SnapshotRef) -> list[str]:
        """Overlay options besides the layer paths, in ``key=value`` form."""
        flags = ["index=off"]
        if self.probes.explicit_off:
            flags += ["redirect_dir=nofollow", "metacopy=off"]
        if self.prefix == "user.":
            flags.append("userxattr")
        if self.opts.volatile and snap.kind is Kind.ACTIVE:
            flags.append("volatile")
        return flags

    def _check_depth(self, snap: SnapshotRef) -> None:
        n = len(self.layout.lower_ids(snap))
        if n > OVERLAY_MAX_LOWERS:
            raise errors.Unsupported(
                f"snapshot {snap.key!r} sits on {n} layers; overlayfs stacks at most "
                f"{OVERLAY_MAX_LOWERS} lower layers (kernel limit). Flatten the chain "
                "(export and apply it as one layer) or use another driver"
            )

    def _bind_source(self, snap: SnapshotRef) -> Path | None:
        """The one directory that is the snapshot's whole tree, when there is one."""
        if snap.kind is Kind.VIEW and len(snap.parents) == 1:
            return self.layout.fs_dir(snap.parents[0])
        if not snap.parents:
            return self.layout.fs_dir(snap.id)
        return None

    # -- storage ----------------------------------------------------------------

    def create(self, snap: SnapshotRef) -> None:
        """Make the snapshot's dirs and short link.

        Raises:
            errors.Unsupported: more parents than overlayfs can stack.
            errors.AlreadyExists: storage for the id exists already.
        """
        if len(snap.parents) > OVERLAY_MAX_LOWERS:
            self._check_depth(snap)
        self.layout.create(snap)

    def commit(self, snap: SnapshotRef) -> None:
        """Freeze: the upper dir becomes a lower layer as it is. Idempotent.

        The work dir goes: a committed layer is only ever mounted read-only
        (no upper, no work dir), and overlay may have left scratch files in it.
        """
        if not self.layout.snapshot_dir(snap.id).is_dir():
            raise errors.NotFound(
                f"commit {snap.key!r}: overlay storage of id {snap.id} is missing; run check()"
            )
        left = rmtree(self.layout.work_dir(snap.id))
        if left:
            raise errors.Busy(f"commit {snap.key!r}: cannot clear its overlay work dir: {left[0]}")

    def remove(self, snap_id: str) -> None:
        """Release the snapshot's storage; tolerant of half-made and pinned dirs."""
        self.layout.remove(snap_id)

    def mounts(self, snap: SnapshotRef) -> list[Mount]:
        """Mounts for ``mount(2)`` callers: a bind when one dir suffices, else an overlay.

        Raises:
            errors.Unsupported: more layers than overlayfs stacks.
        """
        src = self._bind_source(snap)
        if src is not None:
            return [Mount("bind", str(src), ("rbind", "ro" if snap.readonly else "rw"))]
        self._check_depth(snap)
        opts = self.layout.overlay_options(snap) + self._flags(snap)
        if snap.readonly:
            opts.append("ro")
        return [Mount("overlay", "overlay", tuple(opts))]

    def usage(self, snap: SnapshotRef) -> Usage:
        """Bytes (allocated blocks) and inodes of the snapshot's own dir."""
        return self.layout.usage(snap.id)

    def direct_path(self, snap: SnapshotRef) -> Path | None:
        """The snapshot's own dir when it has no parents (its tree needs no overlay).

        None for a snapshot with parents, and for views: a plain directory
        would be writable, so views get a read-only bind mount instead.
        """
        if snap.parents or snap.kind is Kind.VIEW:
            return None
        return self.layout.fs_dir(snap.id)

    def diff_dir(self, snap: SnapshotRef) -> DiffDir:
        """The upper dir (declared only when the probes say it is a plain diff).

        Raises:
            errors.Unsupported: the kernel may write redirects or metacopy.
        """
        if not self.capabilities.diff_dir:
            return super().diff_dir(snap)
        return self.layout.diff_dir(snap, self.prefix)

    # -- mounting ---------------------------------------------------------------

    def mount(self, snap: SnapshotRef, target: Path) -> None:
        """Mount with the new mount API when available, else ``mount(2)``.

        Raises:
            errors.Unsupported: too many layers for overlayfs, or for one
                page of ``mount(2)`` options on kernels without ``lowerdir+``.
            errors.LayerfsError: the kernel refused (message has its reason).
        """
        src = self._bind_source(snap)
        if src is not None:
            mount_one(
                Mount("bind", str(src), ("rbind", "ro" if snap.readonly else "rw")), str(target)
            )
            return
        self._check_depth(snap)
        if snap.kind is Kind.ACTIVE:
            self._drop_volatile_marker(snap.id)
        lower_ids = self.layout.lower_ids(snap)
        params = mounting.OverlayParams(
            lowers=[self.layout.fs_path(i) for i in lower_ids],
            relative_lowers=[],
            upper=self.layout.fs_dir(snap.id) if snap.kind is Kind.ACTIVE else None,
            work=self.layout.work_dir(snap.id) if snap.kind is Kind.ACTIVE else None,
            home=self.home,
            flags=self._flags(snap),
            readonly=snap.readonly,
        )
        what = f"overlay snapshot {snap.key!r}"
        if self._use_new_api():
            mounting.mount_new_api(params, str(target), what)
        else:
            params.lowers = self.layout.lowerdirs(snap)  # short links: fewer bytes
            params.relative_lowers = self.layout.lowerdirs(snap, relative=True)
            mounting.mount_legacy(params, str(target), what, self.probes.page_size)

    def unmount(self, snap: SnapshotRef, target: Path) -> None:
        """Detach lazily; with ``volatile``, clear the marker of a clean unmount.

        Raises:
            errors.LayerfsError: the kernel refused to detach (message says why).
        """
        snap_id = snap.id
        path = str(target)
        try:
            sysmount.umount(path, sysmount.MNT_DETACH)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOENT):
                raise errors.from_oserror(exc, f"unmount overlay snapshot id {snap_id}") from exc
        if sysmount.is_mountpoint(path):  # something else was stacked there too
            unmount_all(path)
        if self.opts.volatile:
            self._drop_volatile_marker(snap_id)

    def _volatile_marker(self, snap_id: str) -> Path:
        return self.layout.work_dir(snap_id).joinpath(*_VOLATILE_MARKER)

    def _drop_volatile_marker(self, snap_id: str) -> bool:
        """Remove ``work/work/incompat/volatile``, which overlayfs leaves after a
        ``volatile`` mount and then refuses to mount over. Returns True if one was there."""
        marker = self._volatile_marker(snap_id)
        if not os.path.lexists(marker):
            return False
        left = rmtree(marker)
        if left:
            raise errors.LayerfsError(
                f"cannot clear overlay's volatile marker of snapshot id {snap_id}: {left[0]}"
            )
        return True

    # -- facts and upkeep -----------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Probed facts, the xattr prefix and the mount path in use."""
        return {
            "driver": self.name,
            "home": str(self.home),
            "xattr_prefix": self.prefix,
            "mount_api": "fsopen+lowerdir+" if self._use_new_api() else "mount(2)",
            "max_layers": OVERLAY_MAX_LOWERS,
            "volatile": self.opts.volatile,
            "probes": self.probes.as_dict(),
        }

    def _overlay_uppers_mounted(self) -> dict[str, str]:
        """Map upper dirs under this home that are mounted here to their targets."""
        prefix = str(self.layout.snapshots) + "/"
        found: dict[str, str] = {}
        for m in sysmount.mountinfo():
            if m.fstype != "overlay":
                continue
            for opt in m.super_options.split(","):
                if opt.startswith("upperdir=") and opt[9:].startswith(prefix):
                    found[opt[9:]] = m.target
        return found

    def check(self, known_ids: set[str], repair: bool) -> list[str]:
        """Orphan dirs, dangling links, trash, stale mounts and volatile leftovers.

        A ``volatile`` marker on a snapshot that is not mounted means the
        process died before unmounting it: its contents may be incomplete.
        """
        problems = []
        mounted = self._overlay_uppers_mounted()
        for upper, target in sorted(mounted.items()):
            snap_id = Path(upper).parent.name
            if snap_id not in known_ids:
                problems.append(
                    f"overlay of unknown snapshot id {snap_id} still mounted on {target}: "
                    + ("detached" if repair else "repair detaches it")
                )
                if repair:
                    unmount_all(target)
        problems += self.layout.check(known_ids, repair)
        for snap_id in sorted(known_ids):
            if not os.path.lexists(self._volatile_marker(snap_id)):
                continue
            if str(self.layout.fs_dir(snap_id)) in mounted:
                continue
            problems.append(
                f"volatile snapshot id {snap_id} was not unmounted cleanly (crash?); its "
                "contents may be incomplete: "
                + ("marker cleared" if repair else "repair clears the marker so it mounts again")
            )
            if repair:
                self._drop_volatile_marker(snap_id)
        return problems
