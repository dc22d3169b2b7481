"""Device nodes for dm devices, with or without udevd, never waiting on a cookie.

``dmsetup`` normally hands udev a *cookie* (a SysV semaphore) and blocks
until udev's rules release it. Where udevd is not running, or its rules
never run ``dmsetup udevcomplete``, that wait hangs forever; this is the
classic devicemapper hang. So every dmsetup call here passes
``--noudevsync``, and:

- where udevd runs, a pyudev monitor (opened *before* the device is made,
  so the event cannot be missed) waits, with a timeout, for udev's
  ``change`` event of the new ``dm-<minor>`` device, which it sends after
  its rules made ``/dev/mapper/<name>``;
- where it does not (or the monitor timed out), ``dmsetup mknodes`` makes
  the node directly.

Either way the node is checked before the device is handed out.
"""

from __future__ import annotations

import os
import stat
import time
from typing import Any

from layerfs import errors

from . import dmsetup

__all__ = ["udevd_running", "create_device", "remove_device", "node_path"]

#: How long to wait for udev's event before making the node ourselves.
EVENT_TIMEOUT = 10.0


def udevd_running() -> bool:
    """True when a udevd listens on this machine (its control socket exists)."""
    return os.path.exists("/run/udev/control")


def node_path(name: str) -> str:
    """The device node of dm device ``name``."""
    return f"/dev/mapper/{name}"


def _monitor() -> Any | None:
    try:
        import pyudev
    except ImportError:
        return None
    try:
        mon = pyudev.Monitor.from_netlink(pyudev.Context())
        mon.filter_by("block")
        mon.start()
    except (OSError, ValueError):
        return None
    return mon


def _wait_event(mon: Any, name: str, minor: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    want = f"dm-{minor}"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        dev = mon.poll(timeout=left)
        if dev is None:
            return False
        if dev.action in ("add", "change") and (dev.sys_name == want or dev.get("DM_NAME") == name):
            return True


def _ensure_node(name: str) -> None:
    path = node_path(name)
    if not os.path.exists(path):
        _make_node(name)
    if not os.path.exists(path):
        dmsetup.mknodes(name)
    if not os.path.exists(path):
        raise errors.LayerfsError(
            f"device {name} exists but {path} does not, even after 'dmsetup mknodes'; "
            "check that /dev is a devtmpfs and /dev/mapper is writable"
        )


def _make_node(name: str) -> None:
    """Make /dev/mapper/<name> from the numbers sysfs gives, as ``dmsetup mknodes`` would."""
    info = dmsetup.info(name)
    if info is None:
        return
    try:
        os.makedirs("/dev/mapper", exist_ok=True)
        os.mknod(node_path(name), 0o600 | stat.S_IFBLK, os.makedev(info.major, info.minor))
    except OSError:
        pass  # dmsetup mknodes is the fallback


def create_device(name: str, table: str, use_udev: bool) -> str:
    """Create dm device ``name`` from ``table`` and return its node once it exists.

    Args:
        use_udev: wait for udevd's event (True) or make the node ourselves.

    Raises:
        errors.AlreadyExists: a device with that name exists.
        errors.NotFound: the table names something missing (a thin id).
    """
    mon = _monitor() if use_udev else None
    dmsetup.create(name, table, udev=mon is not None)
    if mon is not None:
        info = dmsetup.info(name)
        if info is not None:
            _wait_event(mon, name, info.minor, EVENT_TIMEOUT)
    _ensure_node(name)
    return node_path(name)


def remove_device(name: str, use_udev: bool, deferred: bool = True, retries: int = 10) -> bool:
    """Remove dm device ``name`` and its node; see ``dmsetup.remove`` for the arguments.

    Returns:
        True when the device is gone, False when its removal was deferred.

    Raises:
        errors.Busy: still open after the retries and not ``deferred``.
    """
    gone = dmsetup.remove(name, udev=use_udev, deferred=deferred, retries=retries)
    if gone and os.path.lexists(node_path(name)):
        # udev removes the node a moment later; without udev, mknodes drops it.
        for _ in range(20 if use_udev else 0):
            if not os.path.lexists(node_path(name)):
                break
            time.sleep(0.05)
        if os.path.lexists(node_path(name)):
            try:
                os.unlink(node_path(name))
            except OSError:
                dmsetup.mknodes(name)
    return gone


def ensure_node(name: str) -> str:
    """Make sure the node of an existing device ``name`` exists; return it."""
    _ensure_node(name)
    return node_path(name)
