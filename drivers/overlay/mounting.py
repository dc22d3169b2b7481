"""Mounting an overlay: the new mount API when it can, ``mount(2)`` within one page when not.

``mount(2)`` copies at most one page of option text, which bounds the
number of lower layers. Absolute short links (``<home>/l/XXXXXXXX``) are
tried first; when they do not fit, the paths are given relative to the
driver home and the mount is done with the home as working directory.
The working directory is process-wide, so that step holds a lock and puts
the old directory back before releasing it (other threads resolving
relative paths in that instant would see the home; layerfs itself uses
absolute paths everywhere).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

from layerfs import errors
from layerfs._overlayfmt.layout import escape_option_path
from layerfs._sys import mount as sysmount
from layerfs._sys.newmount import MOUNT_ATTR_RDONLY, FsContext

__all__ = ["mount_new_api", "mount_legacy", "OverlayParams"]

_CWD_LOCK = threading.Lock()


class OverlayParams:
    """What one overlay mount needs, in a form both mount paths can use.

    Args:
        lowers: absolute lower dirs, nearest first.
        relative_lowers: the same, relative to ``home``.
        upper: absolute upper dir (None for a read-only overlay).
        work: absolute work dir (None with no upper).
        home: the driver home, base of the relative paths.
        flags: extra options (``index=off``, ``userxattr``, ``volatile``...).
        readonly: mount read-only.
    """

    def __init__(
        self,
        lowers: Sequence[str],
        relative_lowers: Sequence[str],
        upper: Path | None,
        work: Path | None,
        home: Path,
        flags: Sequence[str],
        readonly: bool,
    ) -> None:
        self.lowers = list(lowers)
        self.relative_lowers = list(relative_lowers)
        self.upper = upper
        self.work = work
        self.home = home
        self.flags = list(flags)
        self.readonly = readonly


def mount_new_api(p: OverlayParams, target: str, what: str) -> None:
    """Mount with ``fsopen``/``fsconfig("lowerdir+")``/``fsmount``/``move_mount``.

    Args:
        p: the overlay to mount.
        target: an existing directory.
        what: names the snapshot in error messages.

    Raises:
        errors.LayerfsError: a subclass matching the kernel's errno; the
            message carries the kernel's own reason.
    """
    try:
        with FsContext("overlay") as ctx:
            ctx.set_string("source", "overlay")
            for lower in p.lowers:
                ctx.set_string("lowerdir+", lower)
            if p.upper is not None and p.work is not None:
                ctx.set_string("upperdir", str(p.upper))
                ctx.set_string("workdir", str(p.work))
            for flag in p.flags:
                key, sep, value = flag.partition("=")
                if sep:
                    ctx.set_string(key, value)
                else:
                    ctx.set_flag(key)
            ctx.create()
            ctx.mount(target, MOUNT_ATTR_RDONLY if p.readonly else 0)
    except OSError as exc:
        raise errors.from_oserror(exc, f"mount {what} on {target}") from exc


def _data(lowers: Sequence[str], upper: str | None, work: str | None, flags: Sequence[str]) -> str:
    opts = ["lowerdir=" + ":".join(escape_option_path(x) for x in lowers)]
    if upper is not None and work is not None:
        opts += [f"upperdir={escape_option_path(upper)}", f"workdir={escape_option_path(work)}"]
    return ",".join([*opts, *flags])


def legacy_data(p: OverlayParams, page_size: int) -> tuple[str, bool]:
    """Return the ``mount(2)`` option string for ``p`` and whether it is relative.

    Raises:
        errors.Unsupported: even relative paths do not fit in one page.
    """
    upper = str(p.upper) if p.upper is not None else None
    work = str(p.work) if p.work is not None else None
    data = _data(p.lowers, upper, work, p.flags)
    if len(data) < page_size:
        return data, False
    rel_upper = os.path.relpath(upper, p.home) if upper is not None else None
    rel_work = os.path.relpath(work, p.home) if work is not None else None
    data = _data(p.relative_lowers, rel_upper, rel_work, p.flags)
    if len(data) < page_size:
        return data, True
    raise errors.Unsupported(
        f"{len(p.lowers)} lower layers need {len(data)} bytes of mount options, over the "
        f"{page_size}-byte page that mount(2) accepts; this kernel lacks overlay's "
        "'lowerdir+' (Linux 6.8+), so use a shorter chain (about "
        f"{page_size // (len(p.relative_lowers[0]) + 1) if p.relative_lowers else 0} layers) "
        "or a newer kernel"
    )


def mount_legacy(p: OverlayParams, target: str, what: str, page_size: int) -> None:
    """Mount with ``mount(2)``, options within one page (relative paths if needed).

    Raises:
        errors.Unsupported: the options cannot fit in one page.
        errors.LayerfsError: a subclass matching the kernel's errno.
    """
    data, relative = legacy_data(p, page_size)
    flags = sysmount.MS_RDONLY if p.readonly else 0
    target = os.path.abspath(target)
    try:
        if not relative:
            sysmount.mount("overlay", target, "overlay", flags, data)
            return
        with _CWD_LOCK:
            old = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.chdir(p.home)
                sysmount.mount("overlay", target, "overlay", flags, data)
            finally:
                os.fchdir(old)
                os.close(old)
    except OSError as exc:
        raise errors.from_oserror(exc, f"mount {what} on {target}") from exc
