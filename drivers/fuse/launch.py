"""Start, stop and check server processes, one per mounted union.

A server is a daemon (own session), forked by the store's fork server
(``zygote``) when the caller has one, else started as a fresh interpreter
(double fork). It outlives neither more nor less than its mount: it exits
when the mount is unmounted and released, or when its connection is
aborted. The starter waits on a pipe for the server's ready line, so
``start`` returns only once the mount answers requests, and fails with
the server's errno otherwise.

Stopping detaches the mount lazily, then waits for the server to exit; a
server that does not (files still open under a detached mount, or a hung
server) gets its connection aborted, which fails every pending and later
request with ENOTCONN and ends the server's loop. A server killed with -9
leaves its mount answering ENOTCONN; ``probe`` recognises that state and
``cleanup`` takes such a mount down.

A server is known by its pid, start time and boot id (as the store's
intents record their owners), never by a bare pid: after a reboot or a
crash the pid may belong to an unrelated process. Waiting and signalling
go through a pidfd opened only once the start time matched, so the
process signalled is the one checked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
import select
import signal
import subprocess
import sys
import threading

from layerfs import _owner, errors
from layerfs._sys import fuse_dev
from layerfs._sys import mount as sysmount

from . import fusermount
from .daemon import read_line
from .fs import Config
from .mountinfo import connection_of
from .profile import ENV as PROFILE_ENV
from .zygote import Client, Refused

__all__ = ["ServerInfo", "start", "stop", "probe", "cleanup", "argv_for"]

START_TIMEOUT = 30.0


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    """A running server.

    Attributes:
        pid: the server process.
        connection: its /sys/fs/fuse/connections name ("-" if unknown).
        target: the mount point.
        start: the server's start time (``/proc/<pid>/stat`` field 22), or
            None when unknown (then it is never signalled).
        boot: the boot id the server runs under.
    """

    pid: int
    connection: str
    target: str
    start: str | None = None
    boot: str | None = None

    def open(self) -> int | None:
        """A pidfd of this server, or None when it is gone (or the pid is another process's)."""
        if self.pid <= 0 or self.start is None or self.boot != _owner.boot_id():
            return None
        try:
            fd = os.pidfd_open(self.pid)
        except OSError:
            return None
        if _owner.start_time(self.pid) != self.start:
            os.close(fd)
            return None
        return fd


def argv_for(
    config: Config,
    target: str,
    *,
    source: str = "layerfs",
    stats_file: str | None = None,
    log_file: str | None = None,
) -> list[str]:
    """The command line that serves ``config`` on ``target``."""
    # The first three words are the interpreter's; a zygote takes the rest.
    argv = [sys.executable, "-m", "layerfs.drivers.fuse.server", target]
    argv += ["--lowerdir", ":".join(config.lowers)]
    if config.upper:
        argv += ["--upperdir", config.upper, "--workdir", str(config.work)]
    argv += ["--xattr-prefix", config.xattr_prefix, "--passthrough", config.passthrough]
    argv += ["--threads", str(config.threads), "--source", source]
    if stats_file:
        argv += ["--stats-file", stats_file]
    if log_file:
        argv += ["--log-file", log_file]
    profile_dir = os.environ.get(PROFILE_ENV)
    if profile_dir:
        # Named on the command line: a server forked by a fork server started
        # earlier would not see the caller's environment.
        argv += ["--profile-dir", profile_dir]
    return argv


def start(
    config: Config,
    target: str,
    *,
    source: str = "layerfs",
    stats_file: str | None = None,
    log_file: str | None = None,
    timeout: float = START_TIMEOUT,
    zygote: Client | None = None,
) -> ServerInfo:
    """Mount ``config`` on ``target`` through a new daemonised server.

    With ``zygote``, the server is forked by that store's fork server
    (milliseconds); when the zygote cannot serve this caller, a fresh
    interpreter starts it as without one.

    Raises:
        errors.Unsupported: no /dev/fuse or no permission to mount.
        errors.NotFound: a layer directory is missing.
        errors.LayerfsError: the server failed otherwise (message has its errno).
    """
    target = os.path.realpath(target)
    if os.geteuid() == 0:
        fuse_dev.ensure_fusectl()
    # Absolute paths: a forked server runs in the zygote's working directory.
    config = dataclasses.replace(
        config,
        lowers=[os.path.abspath(x) for x in config.lowers],
        upper=config.upper and os.path.abspath(config.upper),
        work=config.work and os.path.abspath(config.work),
    )
    stats_file = stats_file and os.path.abspath(stats_file)
    log_file = log_file and os.path.abspath(log_file)
    r, w = os.pipe()
    argv = argv_for(config, target, source=source, stats_file=stats_file, log_file=log_file)
    proc = None
    try:
        if zygote is not None:
            try:
                zygote.spawn(argv[3:], w)
            except (Refused, OSError):
                zygote = None
        if zygote is None:
            proc = subprocess.Popen(
                [*argv, "--daemon", "--ready-fd", str(w)], pass_fds=(w,), stdin=subprocess.DEVNULL
            )
    except OSError as exc:
        os.close(r)
        raise errors.from_oserror(exc, f"start the fuse server for {target}") from exc
    finally:
        os.close(w)
    try:
        line = read_line(r, timeout)
    finally:
        os.close(r)
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
    parts = line.split(" ", 2)
    if parts[0] == "ok" and len(parts) == 3:
        pid = int(parts[1])
        # The server answers requests now, so the pid is its own: take its identity.
        return ServerInfo(pid, parts[2], target, _owner.start_time(pid), _owner.boot_id())
    if parts[0] == "error" and len(parts) == 3:
        code = int(parts[1])
        raise errors.from_oserror(OSError(code, parts[2]), f"mount fuse union on {target}")
    raise errors.LayerfsError(
        f"mount fuse union on {target}: the server did not start ({line or 'no answer'}); "
        "run it in the foreground with mount.fuse.layerfs -f to see why"
    )


def _canonical(target: str) -> str:
    # realpath of the parent only: a stat of a hung mount point would block.
    target = os.path.abspath(target).rstrip("/") or "/"
    return os.path.join(os.path.realpath(os.path.dirname(target)), os.path.basename(target))


def _wait_gone(pidfd: int, timeout: float) -> bool:
    """Wait until the process behind ``pidfd`` exits (the fd turns readable)."""
    ready, _, _ = select.select([pidfd], [], [], max(0.0, timeout))
    return bool(ready)


def stop(
    target: str,
    server: ServerInfo | None = None,
    connection: str | None = None,
    timeout: float = 5.0,
) -> None:
    """Unmount ``target`` lazily and make sure its server is gone.

    Args:
        target: the mount point.
        server: the server when known (None: do not wait for it). It is
            waited for and, as a last resort, killed only while its pid
            still has the recorded start time and boot id.
        connection: the connection name when known (else read from mountinfo).
        timeout: seconds to let the server finish before aborting it.
    """
    target = _canonical(target)
    pidfd = server.open() if server is not None else None
    try:
        _stop(target, pidfd, connection, timeout)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _stop(target: str, pidfd: int | None, connection: str | None, timeout: float) -> None:
    conn = connection if connection not in (None, "-") else connection_of(target)
    while connection_of(target) is not None:
        try:
            sysmount.umount(target, sysmount.MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                break
            if exc.errno != errno.EPERM:
                raise errors.from_oserror(exc, f"unmount fuse union at {target}") from exc
            try:
                fusermount.unmount(target)
            except OSError as exc2:
                raise errors.from_oserror(exc2, f"unmount fuse union at {target}") from exc2
    if pidfd is not None and not _wait_gone(pidfd, timeout):
        if conn and os.geteuid() == 0:
            fuse_dev.ensure_fusectl()
            fuse_dev.abort_connection(conn)
        if not _wait_gone(pidfd, timeout):
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            _wait_gone(pidfd, timeout)


def probe(target: str, timeout: float = 2.0) -> str:
    """Say what state the FUSE mount on ``target`` is in, without ever blocking.

    Returns:
        ``"absent"`` (no FUSE mount there), ``"ok"``, ``"dead"`` (the server
        is gone: requests fail with ENOTCONN) or ``"hung"`` (no answer within
        ``timeout``).
    """
    target = _canonical(target)
    if connection_of(target) is None:
        return "absent"
    result: list[str] = []

    def _try() -> None:
        try:
            os.statvfs(target)
            result.append("ok")
        except OSError as exc:
            result.append("dead" if exc.errno == errno.ENOTCONN else "ok")

    t = threading.Thread(target=_try, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else "hung"


def cleanup(target: str) -> bool:
    """Take down a dead or hung FUSE mount on ``target``.

    Returns:
        True when something was cleaned up, False when the mount was fine or absent.
    """
    state = probe(target)
    if state in ("absent", "ok"):
        return False
    target = _canonical(target)
    conn = connection_of(target)
    if conn:
        fuse_dev.ensure_fusectl()
        fuse_dev.abort_connection(conn)
    stop(target, None, conn)
    return True
