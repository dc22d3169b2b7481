"""One function per ``dmsetup`` verb, one private runner, and stderr back to errno.

Every call goes through ``_dmsetup``, which applies a timeout and turns a
failure into a ``layerfs.errors`` class chosen from the errno text the
kernel's ioctl error left in ``dmsetup``'s stderr ("message ioctl on pool
failed: File exists" is EEXIST). Callers test the category, never the text.

Commands that create, rename or remove device nodes take ``udev``: when
False they run with ``--noudevsync --noudevrules`` and the caller makes the
nodes with ``mknodes``; when True they still run with ``--noudevsync`` (so
no call ever waits on a udev cookie that nobody will complete) and the
caller waits for udev's event itself (see ``udev.py``).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import time
from collections.abc import Sequence

from layerfs import errors
from layerfs._run import CommandFailed, run
from layerfs._sys.mount import mountinfo

__all__ = [
    "DeviceInfo",
    "create",
    "remove",
    "suspend",
    "resume",
    "message",
    "status",
    "table",
    "info",
    "ls",
    "open_count",
    "mknodes",
    "targets",
    "error_from",
]

#: Seconds any single dmsetup call may take before it is treated as hung.
TIMEOUT = 60.0

# errno values dmsetup reports in its stderr, matched by their strerror text.
_ERRNOS = (
    errno.EEXIST,
    errno.ENXIO,
    errno.ENODATA,
    errno.ENOENT,
    errno.EBUSY,
    errno.ENOSPC,
    errno.EINVAL,
    errno.EROFS,
    errno.EIO,
    errno.EPERM,
    errno.EACCES,
    errno.ENOMEM,
    errno.ENODEV,
)


def error_from(exc: CommandFailed, what: str) -> errors.LayerfsError:
    """Turn a failed dmsetup run into the layerfs error its errno stands for.

    Args:
        exc: the failure, carrying dmsetup's stderr.
        what: what was being done, to start the message ("create thin 7").

    Returns:
        NotFound (ENXIO, ENODATA, ENOENT, "Device does not exist"),
        AlreadyExists (EEXIST), Busy (EBUSY), NoSpace (ENOSPC),
        InvalidArgument (EINVAL), Unsupported (EPERM, EACCES, ENODEV),
        Corrupt (EIO, EROFS), else LayerfsError.
    """
    text = exc.stderr
    code = None
    if exc.exit_code is None:
        return errors.Busy(f"{what}: dmsetup hung and was stopped after {TIMEOUT:g}s ({text})")
    if "Device does not exist" in text or "No such device" in text:
        code = errno.ENXIO
    for candidate in _ERRNOS:
        if os.strerror(candidate) in text:
            code = candidate
            break
    message = f"{what}: {text or exc}"
    if code in (errno.ENXIO, errno.ENODATA, errno.ENOENT):
        return errors.NotFound(message)
    if code == errno.EEXIST:
        return errors.AlreadyExists(message)
    if code == errno.EBUSY:
        return errors.Busy(message + " (unmount it or stop what holds it open, then retry)")
    if code == errno.ENOSPC:
        return errors.NoSpace(message + " (free space in the thin pool or grow it)")
    if code == errno.EINVAL:
        return errors.InvalidArgument(message)
    if code in (errno.EPERM, errno.EACCES, errno.ENODEV):
        return errors.Unsupported(
            message + " (device-mapper needs root and the dm-thin-pool module)"
        )
    if code in (errno.EIO, errno.EROFS):
        return errors.Corrupt(message + " (check the pool with thin_check)")
    return errors.LayerfsError(message)


def _dmsetup(args: Sequence[str], what: str, timeout: float = TIMEOUT) -> str:
    """Run ``dmsetup args`` and return stdout; failures become layerfs errors."""
    try:
        return run(["dmsetup", *args], timeout=timeout)
    except CommandFailed as exc:
        raise error_from(exc, what) from exc


def _udev_flags(udev: bool) -> list[str]:
    return ["--noudevsync"] if udev else ["--noudevsync", "--noudevrules"]


def create(name: str, table: str, *, udev: bool = False, readonly: bool = False) -> None:
    """Create and resume device ``name`` with the one-line ``table``.

    Raises:
        errors.AlreadyExists: a device with that name exists.
        errors.NotFound: the table names a thin id or device that does not exist.
    """
    args = ["create", name, "--table", table, *_udev_flags(udev)]
    if readonly:
        args.append("--readonly")
    try:
        _dmsetup(args, f"create device {name}")
    except errors.Busy as exc:
        # The kernel answers EBUSY, not EEXIST, for a name that is taken.
        if info(name) is not None:
            raise errors.AlreadyExists(
                f"create device {name}: a device with that name exists"
            ) from exc
        raise


def remove(
    name: str, *, udev: bool = False, retries: int = 10, delay: float = 0.1, deferred: bool = True
) -> bool:
    """Remove device ``name``, retrying while it is busy.

    Args:
        retries: attempts while the kernel answers EBUSY (a process that just
            closed the device, udev's blkid probe...).
        deferred: after the retries, ask for deferred removal (the kernel
            removes the device when its last opener closes it).

    Returns:
        True when the device is gone now (or was already), False when its
        removal was deferred.

    Raises:
        errors.Busy: still busy after the retries and ``deferred`` is False.
    """
    for attempt in range(retries):
        try:
            _dmsetup(["remove", name, *_udev_flags(udev)], f"remove device {name}")
            return True
        except errors.NotFound:
            return True
        except errors.Busy:
            # Retrying helps against a short-lived opener (udev's probe), not
            # against a mount or a device stacked on top.
            if attempt + 1 == retries or held(name):
                if not deferred:
                    raise
                break
            time.sleep(delay * (attempt + 1))
    try:
        _dmsetup(["remove", "--deferred", name, *_udev_flags(udev)], f"remove device {name}")
    except errors.NotFound:
        return True
    return False


def suspend(name: str, *, flush: bool = True) -> None:
    """Suspend ``name`` (flushing its I/O first unless ``flush`` is False)."""
    args = ["suspend", name] if flush else ["suspend", "--noflush", name]
    _dmsetup(args, f"suspend device {name}")


def resume(name: str, *, udev: bool = False) -> None:
    """Resume a suspended ``name``."""
    _dmsetup(["resume", name, *_udev_flags(udev)], f"resume device {name}")


def message(name: str, text: str) -> None:
    """Send ``text`` to sector 0 of the target of ``name`` (a pool message)."""
    _dmsetup(["message", name, "0", text], f"message '{text}' to {name}")


def status(name: str) -> str:
    """Return the status line of ``name`` ("start length target fields...")."""
    return _dmsetup(["status", name], f"status of device {name}").strip()


def table(name: str) -> str:
    """Return the table line of ``name``."""
    return _dmsetup(["table", name], f"table of device {name}").strip()


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """What the kernel says about one active dm device.

    Attributes:
        name: the dm name.
        major, minor: the block device numbers.
        suspended: the device is suspended.
    """

    name: str
    major: int
    minor: int
    suspended: bool


def _sysfs_devices() -> dict[str, DeviceInfo]:
    # sysfs answers "which devices exist, suspended or not" without
    # spawning dmsetup, which costs far more than the answer (seconds per
    # call in an emulated test VM).
    found: dict[str, DeviceInfo] = {}
    try:
        entries = os.listdir("/sys/block")
    except OSError:
        return found
    for entry in entries:
        if not entry.startswith("dm-"):
            continue
        base = f"/sys/block/{entry}"
        try:
            with open(f"{base}/dm/name") as f:
                name = f.read().strip()
            with open(f"{base}/dm/suspended") as f:
                suspended = f.read().strip() == "1"
            with open(f"{base}/dev") as f:
                major, minor = (int(x) for x in f.read().strip().split(":"))
        except (OSError, ValueError):
            continue  # removed while we looked
        found[name] = DeviceInfo(name, major, minor, suspended)
    return found


def info(name: str) -> DeviceInfo | None:
    """Return ``DeviceInfo`` for ``name``, or None when there is no such device."""
    return _sysfs_devices().get(name)


def held(name: str) -> bool:
    """Whether ``name`` is mounted in this mount namespace or has a device stacked on it."""
    dev = info(name)
    if dev is None:
        return False
    sysfs = f"/sys/dev/block/{dev.major}:{dev.minor}/holders"
    try:
        if os.listdir(sysfs):
            return True
    except OSError:
        pass
    sources = {f"/dev/mapper/{name}", f"/dev/dm-{dev.minor}"}
    return any(m.source in sources for m in mountinfo())


def open_count(name: str) -> int | None:
    """How many openers hold ``name`` (mounts count), or None when it does not exist."""
    try:
        out = _dmsetup(["info", "-c", "--noheadings", "-o", "open", name], f"info of device {name}")
    except errors.NotFound:
        return None
    try:
        return int(out.strip())
    except ValueError:
        return None


def ls(target: str | None = None) -> dict[str, tuple[int, int]]:
    """Return ``{name: (major, minor)}`` for every dm device (of ``target`` type only)."""
    if target is None:
        return {n: (i.major, i.minor) for n, i in _sysfs_devices().items()}
    out = _dmsetup(["ls", "--target", target], "list devices")
    found: dict[str, tuple[int, int]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or line.startswith("No devices"):
            continue
        nums = "".join(parts[1:]).strip("()").replace(",", ":").split(":")
        try:
            found[parts[0]] = (int(nums[0]), int(nums[1]))
        except (ValueError, IndexError):
            continue
    return found


def mknodes(name: str | None = None) -> None:
    """Make (or fix) the /dev/mapper node of ``name``, or of every device."""
    _dmsetup(["mknodes", *([name] if name else [])], f"make node for {name or 'all devices'}")


def targets() -> dict[str, str]:
    """Return ``{target name: version}`` for the targets the kernel has loaded."""
    out = _dmsetup(["targets"], "list device-mapper targets")
    found = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            found[parts[0]] = parts[1]
    return found
