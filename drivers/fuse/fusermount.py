"""Mounting and unmounting without privileges, through the setuid ``fusermount3``.

``fusermount3 -o OPTS -- TARGET`` run with ``_FUSE_COMMFD=<fd>`` in its
environment opens /dev/fuse, mounts it on TARGET (which the user must own
or be allowed to write) and sends the device fd back over that unix
socket as SCM_RIGHTS ancillary data. ``fusermount3 -u -z TARGET`` detaches
it lazily. Passthrough is not available this way (registering backing
files needs CAP_SYS_ADMIN), so such servers use the writeback cache.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

from layerfs._run import command_env

__all__ = ["available", "mount", "unmount"]

TIMEOUT = 30


def available() -> bool:
    """True when ``fusermount3`` is on PATH."""
    return shutil.which("fusermount3") is not None


def mount(target: str, source: str, subtype: str, readonly: bool) -> int:
    """Mount a FUSE filesystem on ``target`` through fusermount3; return the device fd.

    Raises:
        OSError: fusermount3 is missing (ENOENT) or refused (EPERM, with its message).
    """
    exe = shutil.which("fusermount3")
    if exe is None:
        raise OSError(2, "fusermount3 not found; install fuse3")
    opts = f"{'ro' if readonly else 'rw'},nosuid,nodev,default_permissions"
    opts += f",fsname={source},subtype={subtype}"
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        env = dict(command_env(), _FUSE_COMMFD=str(child.fileno()))
        proc = subprocess.run(
            [exe, "-o", opts, "--", target],
            env=env,
            pass_fds=(child.fileno(),),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        child.close()
        if proc.returncode != 0:
            raise OSError(1, f"fusermount3: {proc.stderr.strip() or 'failed'}")
        _, fds, _, _ = socket.recv_fds(parent, 1, 1)
        if not fds:
            raise OSError(5, "fusermount3 sent no device fd")
        os.set_inheritable(fds[0], False)
        return fds[0]
    finally:
        child.close()
        parent.close()


def unmount(target: str) -> None:
    """Detach a FUSE mount lazily with ``fusermount3 -u -z``.

    Raises:
        OSError: fusermount3 failed (its message).
    """
    exe = shutil.which("fusermount3")
    if exe is None:
        raise OSError(2, "fusermount3 not found; install fuse3")
    proc = subprocess.run(
        [exe, "-u", "-z", "--", target],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=command_env(),
    )
    if proc.returncode != 0:
        raise OSError(1, f"fusermount3 -u: {proc.stderr.strip() or 'failed'}")
