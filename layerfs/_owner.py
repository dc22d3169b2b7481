"""Identify the process that owns an intent or a mount, and tell whether it still lives.

A pid alone is not enough: pids are reused. The owner string is
``"<pid>:<start time in clock ticks since boot>:<boot id>"``, which no
later process can match.
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


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = data[data.rindex(")") + 2 :].split()
    return fields[19]  # field 22 of stat(5), counted from field 3 here


@functools.cache
def _boot() -> str:
    return _boot_id()


def current() -> str:
    """The owner string of this process."""
    pid = os.getpid()
    return f"{pid}:{_start_time(pid)}:{_boot()}"


def is_alive(owner: str | None) -> bool:
    """True when the process named by ``owner`` is still running."""
    if not owner:
        return False
    try:
        pid_text, start, boot = owner.split(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if boot != _boot():
        return False
    return _start_time(pid) == start
