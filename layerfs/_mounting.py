"""Mounting ``Mount`` values and taking mounts down, with layerfs errors.

This module sits below ``_types``: ``Mount.mount`` calls ``mount_one``, so
what is mounted is described here by its shape (``MountSpec``, which
``layerfs.Mount`` has), not by importing the class.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from typing import Protocol

from . import errors
from ._sys import mount as sysmount


class MountSpec(Protocol):
    """What ``mount_one`` reads of a mount: the fields of ``layerfs.Mount``."""

    @property
    def type(self) -> str:
        """The filesystem type (``overlay``, ``bind``, ``fuse.layerfs``...)."""
        ...

    @property
    def source(self) -> str:
        """What is mounted: a device, a directory, or a name."""
        ...

    @property
    def options(self) -> tuple[str, ...]:
        """mount(8)-style options, in order."""
        ...


_FLAG_OPTIONS = {
    "ro": sysmount.MS_RDONLY,
    "nosuid": sysmount.MS_NOSUID,
    "nodev": sysmount.MS_NODEV,
    "noexec": sysmount.MS_NOEXEC,
    "noatime": sysmount.MS_NOATIME,
    "relatime": sysmount.MS_RELATIME,
    "bind": sysmount.MS_BIND,
    "rbind": sysmount.MS_BIND | sysmount.MS_REC,
}
_IGNORED_OPTIONS = {"rw", "defaults"}


def split_options(options: tuple[str, ...]) -> tuple[int, str]:
    """Split mount(8)-style options into mount(2) flags and the data string."""
    flags = 0
    data: list[str] = []
    for opt in options:
        if opt in _FLAG_OPTIONS:
            flags |= _FLAG_OPTIONS[opt]
        elif opt not in _IGNORED_OPTIONS:
            data.append(opt)
    return flags, ",".join(data)


def mount_one(m: MountSpec, target: str) -> None:
    """Mount one ``Mount`` on ``target`` with mount(2).

    A read-only bind is done the way the kernel needs it: bind, then
    remount read-only.

    Raises:
        errors.Unsupported: no permission or unknown filesystem type.
        errors.InvalidArgument: the kernel refused the options.
    """
    if m.type.startswith("fuse."):
        _mount_with_helper(m, target)
        return
    flags, data = split_options(m.options)
    is_bind = m.type == "bind" or bool(flags & sysmount.MS_BIND)
    what = f"mount {m.type} {m.source} on {target}"
    try:
        if is_bind:
            flags |= sysmount.MS_BIND
            sysmount.mount(m.source, target, None, flags & (sysmount.MS_BIND | sysmount.MS_REC))
            if flags & ~(sysmount.MS_BIND | sysmount.MS_REC):
                try:
                    sysmount.mount(
                        "none", target, None, flags | sysmount.MS_REMOUNT | sysmount.MS_BIND
                    )
                except OSError:
                    sysmount.umount(target, sysmount.MNT_DETACH)
                    raise
        else:
            if len(data) >= os.sysconf("SC_PAGESIZE"):
                raise errors.Unsupported(
                    f"{what}: options are {len(data)} bytes, over mount(2)'s one-page limit"
                )
            sysmount.mount(m.source, target, m.type, flags, data or None)
    except OSError as exc:
        raise errors.from_oserror(exc, what) from exc


def _mount_with_helper(m: MountSpec, target: str) -> None:
    """Mount a FUSE filesystem the way mount(8) does: through ``mount.<type>``.

    A FUSE mount needs a server holding the ``/dev/fuse`` fd, which plain
    mount(2) cannot start; the helper (``mount.fuse.layerfs`` for our own)
    starts it and returns once the filesystem answers.
    """
    from ._run import CommandFailed, run

    helper = f"mount.{m.type}"
    path = shutil.which(helper) or next(
        (p for p in (f"/usr/sbin/{helper}", f"/sbin/{helper}") if os.path.exists(p)), None
    )
    if path is None:
        raise errors.Unsupported(f"mount {m.type} on {target}: {helper} is not installed")
    argv = [path, m.source, target]
    if m.options:
        argv += ["-o", ",".join(m.options)]
    try:
        run(argv, timeout=60)
    except CommandFailed as exc:
        raise errors.LayerfsError(f"mount {m.type} on {target}: {exc.stderr}") from exc


def unmount_path(target: str, attempts: int = 1) -> None:
    """Detach the top mount on ``target`` lazily; a target not mounted is fine."""
    for i in range(attempts):
        try:
            sysmount.umount(target, sysmount.MNT_DETACH)
            return
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            if exc.errno == errno.EBUSY and i + 1 < attempts:
                time.sleep(0.05 * (i + 1))
                continue
            raise errors.from_oserror(exc, f"unmount {target}") from exc


def unmount_all(target: str) -> None:
    """Detach every mount stacked on or below ``target``, deepest first."""
    for m in reversed(sysmount.mounts_under(target)):
        unmount_path(m.target, attempts=5)
    # A stack of mounts on the same target shows once per layer in mountinfo;
    # keep detaching until nothing is left there.
    for _ in range(64):
        if not sysmount.is_mountpoint(target):
            return
        unmount_path(target, attempts=5)
