"""What the kernel and the backing filesystem offer overlayfs, probed once per open.

Facts relied on, with the kernel version each appeared in:

- overlayfs is in mainline since Linux 3.18; ``index=`` since 4.13,
  ``redirect_dir=`` since 4.10 (``nofollow`` since 4.15), ``metacopy=``
  since 4.19, ``volatile`` since 5.10, ``userxattr`` (the ``user.overlay.*``
  xattrs that let an unprivileged user namespace mount overlay) since 5.11.
- The new mount API (``fsopen``/``fsconfig``/``fsmount``/``move_mount``)
  exists since 5.2, but overlayfs parses its parameters through it only
  since 6.5, and ``lowerdir+`` (one lower layer per ``fsconfig`` call, which
  lifts the one-page option limit of ``mount(2)``) since 6.8.
- overlayfs stacks at most 500 lower layers (``OVL_MAX_STACK``).
- The upper filesystem must fill ``d_type`` in readdir (overlay needs it to
  find whiteouts; XFS formatted with ``ftype=0`` and ext4 without the
  ``filetype`` feature do not), must have the xattrs overlay marks opaque
  directories with (without them the kernel still mounts, but falls back
  to ``index=off`` and fails on the first opaque directory; ramfs has none)
  and must not be overlayfs itself, FUSE, NFS, aufs or eCryptfs. overlayfs
  as upper is the case inside most containers, whose root is an overlay.
- ``redirect_dir`` and ``metacopy`` defaults come from the kernel config and
  show in ``/sys/module/overlay/parameters``; when either is on, an upper
  dir may hold a renamed directory as a redirect xattr or a file as
  metadata only, and is then not a plain diff. This driver always asks for
  ``redirect_dir=nofollow,metacopy=off``, so its upper dirs are plain diffs
  (a rename of a lower directory then fails with EXDEV and tools copy).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import tempfile
from pathlib import Path

from layerfs._overlayfmt.filesystem import existing_ancestor, fs_name, instead, xattr_problem
from layerfs._sys import fsinfo
from layerfs._sys.newmount import FsContext
from layerfs.driver import is_privileged

__all__ = [
    "Probes",
    "probe",
    "unavailable_reason",
    "kernel_version",
    "backing_fs_problem",
]

_PARAMS = Path("/sys/module/overlay/parameters")
_REFUSED_UPPER = {"overlay", "fuse", "nfs", "cifs", "aufs", "ecryptfs", "squashfs", "afs"}


def kernel_version() -> tuple[int, int]:
    """Return (major, minor) of the running kernel."""
    m = re.match(r"(\d+)\.(\d+)", platform.release())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def overlay_in_kernel() -> bool:
    """True when overlay is registered or can be loaded as a module on first mount."""
    try:
        with open("/proc/filesystems") as f:
            if any(line.split()[-1:] == ["overlay"] for line in f):
                return True
    except OSError:
        pass
    mods = Path("/lib/modules") / platform.release() / "kernel/fs/overlayfs"
    return mods.is_dir()


def backing_fs_problem(path: Path) -> str | None:
    """Say why the filesystem holding ``path`` cannot be overlay's upper, or None.

    Checks the filesystem type, xattr support and, when ``path`` (or the
    nearest existing ancestor) has entries, d_type support. Creates nothing.
    """
    where = existing_ancestor(path)
    try:
        name = fs_name(where)
    except OSError as exc:
        return f"cannot statfs {where}: {exc.strerror}"
    if name in _REFUSED_UPPER:
        return f"{where} is on {name}, which overlayfs cannot use as upper layer; {instead(name)}"
    try:
        dtype = fsinfo.dir_has_dtype(str(where))
    except OSError:
        dtype = None
    if dtype is False:
        return (
            f"the {name} filesystem holding {where} has no d_type support "
            f"(xfs needs ftype=1, ext4 the filetype feature), which overlayfs needs; "
            f"{instead(name)}"
        )
    return xattr_problem(where, name)


def unavailable_reason(root: Path) -> str | None:
    """Say cheaply why overlay cannot run for a store at ``root``, or None."""
    if not overlay_in_kernel():
        return "kernel has no overlay filesystem"
    if not is_privileged():
        if kernel_version() < (5, 11):
            return "unprivileged overlay mounts need Linux 5.11+ (userxattr)"
        if os.geteuid() != 0:
            return "overlay mounts need CAP_SYS_ADMIN (root, or root in a user namespace)"
    return backing_fs_problem(Path(root))


def _read_param(name: str) -> str | None:
    try:
        return (_PARAMS / name).read_text().strip()
    except OSError:
        return None


def _probe_lowerdir_plus() -> tuple[bool, bool]:
    """Return (new mount API usable for overlay, ``lowerdir+`` accepted)."""
    try:
        ctx = FsContext("overlay")
    except OSError:
        return False, False
    with ctx:
        try:
            ctx.set_string("lowerdir+", "/")
        except OSError:
            return True, False
    return True, True


def _probe_dtype(home: Path) -> bool:
    """Write one file in ``home`` and read its d_type back."""
    # A directory of its own: several processes may open one store at once.
    probe_dir = Path(tempfile.mkdtemp(prefix=".probe-dtype-", dir=home))
    try:
        (probe_dir / "f").touch()
        return fsinfo.dir_has_dtype(str(probe_dir)) is not False
    finally:
        try:
            (probe_dir / "f").unlink()
        except OSError:
            pass
        try:
            probe_dir.rmdir()
        except OSError:
            pass


@dataclasses.dataclass(frozen=True)
class Probes:
    """The facts the overlay driver acts on, probed at open.

    Attributes:
        kernel: running kernel release.
        backing_fs: filesystem type of the driver home.
        d_type: whether that filesystem fills d_type.
        privileged: root in the initial user namespace.
        userxattr: mount with ``userxattr`` (``user.overlay.*`` xattrs).
        new_mount_api: ``fsopen("overlay")`` works.
        lowerdir_plus: overlay accepts ``lowerdir+`` through ``fsconfig``.
        redirect_dir_default: the module's ``redirect_dir`` default ("Y"/"N"/None).
        metacopy_default: the module's ``metacopy`` default.
        explicit_off: the kernel accepts ``redirect_dir=nofollow`` and
            ``metacopy=off``, which this driver passes on every mount.
        native_diff: upper dirs are plain diffs (no redirects, no metacopy).
        page_size: the ``mount(2)`` option limit in bytes.
    """

    kernel: str
    backing_fs: str
    d_type: bool
    privileged: bool
    userxattr: bool
    new_mount_api: bool
    lowerdir_plus: bool
    redirect_dir_default: str | None
    metacopy_default: str | None
    explicit_off: bool
    native_diff: bool
    page_size: int

    def as_dict(self) -> dict[str, object]:
        """The probes as a JSON-serialisable dict."""
        return dataclasses.asdict(self)


def probe(home: Path) -> Probes:
    """Probe the kernel and the filesystem of ``home`` (which must exist).

    Writes and removes one small file in ``home`` to test d_type.
    """
    version = kernel_version()
    privileged = is_privileged()
    new_api, plus = _probe_lowerdir_plus()
    redirect = _read_param("redirect_dir")
    metacopy = _read_param("metacopy")
    # redirect_dir=nofollow needs 4.15, metacopy=off 4.19; userxattr forces both off.
    explicit_off = version >= (4, 19)
    userxattr = not privileged
    native = explicit_off or userxattr or (redirect != "Y" and metacopy != "Y")
    try:
        fs = fsinfo.fs_type_name(fsinfo.fs_type(str(home)))
    except OSError:
        fs = "unknown"
    return Probes(
        kernel=platform.release(),
        backing_fs=fs,
        d_type=_probe_dtype(home),
        privileged=privileged,
        userxattr=userxattr,
        new_mount_api=new_api,
        lowerdir_plus=plus and version >= (6, 8),
        redirect_dir_default=redirect,
        metacopy_default=metacopy,
        explicit_off=explicit_off,
        native_diff=native,
        page_size=os.sysconf("SC_PAGESIZE"),
    )
