"""Identify the process that owns an intent or a mount, and tell whether it still lives.

A pid alone is not enough: pids are reused, and a pid means nothing outside
its pid namespace (a store shared between a container and the host). The
owner string is ``"<pid>:<start time>:<boot id>:<pid namespace>"``: the
start time (clock ticks since boot, field 22 of ``/proc/<pid>/stat``) and
the boot id rule out reuse, and the namespace (the inode of
``/proc/self/ns/pid``) says whether our ``/proc`` can see that pid at all.
An owner in another namespace is treated as alive unless its boot id
proves otherwise: we cannot look at it, so we must not undo its work.
"""

from __future__ import annotations

import functools
import os


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def start_time(pid: int | str) -> str | None:
    """The start time of ``pid`` (clock ticks since boot) as text, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):  # a zombie has finished: nothing of it runs
        return None
    return fields[19]  # field 22 of stat(5), counted from field 3 here


@functools.cache
def boot_id() -> str:
    """This boot's id (``/proc/sys/kernel/random/boot_id``)."""
    return _boot_id()


def _pid_namespace() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return "unknown"
    return link.partition("[")[2].rstrip("]") or "unknown"


def _self_pid() -> int:
    # The pid as the mounted /proc sees it: that is where is_alive will look.
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def current() -> str:
    """The owner string of this process."""
    pid = _self_pid()
    return f"{pid}:{start_time(pid)}:{boot_id()}:{_pid_namespace()}"


def is_alive(owner: str | None) -> bool:
    """True when the process named by ``owner`` may still be running.

    False only when it provably is not: another boot, or the same namespace
    and no process with that pid and start time.
    """
    if not owner:
        return False
    parts = owner.split(":")
    if len(parts) < 3:
        return False
    try:
        pid = int(parts[0])
    except ValueError:
        return False
    if parts[2] != boot_id():
        return False
    if len(parts) > 3 and parts[3] != _pid_namespace():
        return True
    return start_time(pid) == parts[1]


def any_alive(owners: str | None) -> bool:
    """True when any owner in the space-separated list ``owners`` may still be running."""
    return any(is_alive(o) for o in (owners or "").split())
