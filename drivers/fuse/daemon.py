"""Becoming a daemon, and reading a daemon's one ready line.

The zygote and a server started as its own program both detach the same
way, and their starters both wait for a single ``ok ...`` or ``error ...``
line on a pipe.
"""

from __future__ import annotations

import os
import select
import time

__all__ = ["daemonize", "read_line"]


def daemonize(keep_stderr: bool = False) -> None:
    """Fork twice with a new session between, so the caller's parent can move on.

    The process left is no session leader (it can never take a controlling
    terminal), works in ``/``, and has stdin and stdout (and stderr unless
    ``keep_stderr``) on /dev/null.
    """
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1) if keep_stderr else (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def read_line(fd: int, timeout: float) -> str:
    """The first line written to ``fd``, or what came before EOF or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()
