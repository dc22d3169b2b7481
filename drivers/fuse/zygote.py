"""A fork server per store: servers start by ``fork`` from a pre-imported process.

Starting a server as a fresh interpreter costs ~200 ms of imports per
mount and ~18 MiB of private memory per server. The zygote is a small
daemon, one per store (its socket is ``zygote.sock`` in the fuse driver's
run dir), that imported the server's modules once, froze its heap
(``gc.freeze``) and forks one server per mount. A forked server shares
the zygote's pages copy-on-write and pays only for what it writes.

Facts the design rests on:

- Each mount still has its own process: a server killed with -9 takes
  down only its own mount, and ``launch`` knows a server by the pid,
  start time and ready line exactly as before. The zygote is the
  server's parent and reaps it; killing the zygote leaves its servers
  running (they are reparented) and the next mount starts a new zygote.
- A server is forked from the zygote, never from the caller: it inherits
  no state of the runtime that asked for the mount. It does inherit the
  zygote's credentials, namespaces, root and cgroup, so the zygote
  serves only callers with the same effective uid (``SO_PEERCRED``),
  mount, pid and user namespaces, root directory and cgroup; anyone else
  gets a refusal and ``launch`` starts a fresh server as before (a
  caller refused once, or whose zygote cannot start, asks no more).
- Lifetime: a client (the fuse driver of an open store) keeps one
  connection; the zygote exits as soon as it has neither a connection
  nor a live server, so closing the last store that mounted through it,
  or unmounting the last mount after the stores closed, stops it. At most
  one zygote runs per run dir: it holds ``zygote.lock`` (``flock``) for
  its whole life, so a lost race to start one just connects to the winner.
- Wire format: ``SOCK_SEQPACKET``, one JSON object per message. ``hello``
  (the caller's namespaces) is answered with the zygote's pid or a
  refusal; ``spawn`` (server arguments, plus the ready-line pipe passed
  with ``SCM_RIGHTS``) with the new server's pid; ``bye`` with whether
  the zygote is about to exit, so a closing caller can wait for it.

Usable as ``python -m layerfs.drivers.fuse.zygote RUN_DIR --ready-fd N``
(``Client`` starts it so); the command line names the run dir, so a
leftover zygote is visible to whoever looks for processes of a store.
Forked servers keep that command line; their process name (``comm``) is
``layerfs-fuse``, the zygote's ``layerfs-zygote``.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from .daemon import daemonize, read_line

__all__ = ["Client", "Refused", "main"]

SOCKET = "zygote.sock"
LOCK = "zygote.lock"
#: How long a new zygote waits for its first connection before giving up.
FIRST_CONNECTION = 10.0
START_TIMEOUT = 30.0
#: How long a caller waits for any answer of a running zygote.
REPLY_TIMEOUT = 5.0


class Refused(Exception):
    """The zygote cannot serve this caller (another uid or namespace), or is gone.

    ``launch`` catches it and starts a fresh server instead.
    """


def identity() -> list[str]:
    """What a forked server inherits that must match the caller's.

    The namespaces and root it mounts and resolves paths in, and the
    cgroup it is accounted (and killed) with: a fresh server would have
    the caller's.
    """
    out = []
    for ns in ("mnt", "pid", "user"):
        try:
            out.append(os.readlink(f"/proc/self/ns/{ns}"))
        except OSError:
            out.append("?")
    st = os.stat("/")
    out.append(f"root:{st.st_dev}:{st.st_ino}")
    try:
        with open("/proc/self/cgroup") as f:
            out.append(f.read().strip())
    except OSError:
        out.append("?")
    return out


def _path(dirfd: int) -> str:
    # Through the directory's fd: a store's run dir may be deeper than the
    # 108 bytes a socket address holds.
    return f"/proc/self/fd/{dirfd}/{SOCKET}"


def _send(sock: socket.socket, msg: dict[str, object], fds: Sequence[int] = ()) -> None:
    data = json.dumps(msg).encode()
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    sock.sendmsg([data], anc)


def _recv(sock: socket.socket) -> tuple[dict[str, object] | None, list[int]]:
    """One message and the fds passed with it; (None, []) at end of stream."""
    fds = array.array("i")
    data, anc, _, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(4 * fds.itemsize))
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    try:
        msg = json.loads(data)
    except ValueError:
        msg = {}
    return (msg if isinstance(msg, dict) else {}), list(fds)


# -- the caller's side ------------------------------------------------------------------


class Client:
    """One caller's connection to the zygote of ``run_dir``, started when missing.

    Thread-safe; after a ``fork`` of the caller the child makes its own
    connection. Close it (``close``) when the store closes: the zygote
    lives while it has a connection or a server.

    Args:
        run_dir: the fuse driver's run directory (made when missing).
    """

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._owner = 0  # the pid that opened _sock
        self._zygote = 0
        self._refused = ""  # why this caller never gets a forked server

    def spawn(self, argv: Sequence[str], ready_fd: int) -> int:
        """Have the zygote fork a server for ``argv``, writing its ready line to ``ready_fd``.

        Returns:
            The server's pid, or 0 when the request went out but the zygote
            vanished before answering: the ready line (or its absence) tells.

        Raises:
            Refused: nothing was forked; start a fresh server instead.
        """
        with self._lock:
            if self._refused:
                raise Refused(self._refused)
            for attempt in range(2):
                try:
                    sock = self._connected()
                except (Refused, OSError) as exc:
                    self._refused = str(exc)
                    raise Refused(self._refused) from exc
                try:
                    _send(sock, {"op": "spawn", "argv": list(argv)}, [ready_fd])
                except OSError as exc:
                    # Not delivered: the zygote exited or was killed. Start anew once.
                    self._drop()
                    if attempt:
                        raise Refused(f"the zygote of {self.run_dir} went away: {exc}") from exc
                    continue
                try:
                    reply, _ = _recv(sock)
                except OSError:
                    reply = None
                if reply is None:
                    self._drop()
                    return 0
                if "pid" in reply:
                    return int(str(reply["pid"]))
                raise Refused(str(reply.get("error", "no pid in the zygote's answer")))
        raise AssertionError("unreachable")

    def close(self, timeout: float = 5.0) -> None:
        """Drop the connection; when the zygote exits because of it, wait until it has."""
        with self._lock:
            sock = self._sock
            if sock is None or self._owner != os.getpid():
                self._drop()
                return
            exiting = False
            with contextlib.suppress(OSError):
                _send(sock, {"op": "bye"})
                reply, _ = _recv(sock)
                exiting = bool(reply and reply.get("exiting"))
            pidfd = -1
            if exiting:
                with contextlib.suppress(OSError):
                    pidfd = os.pidfd_open(self._zygote)
            self._drop()
            if pidfd >= 0:
                try:
                    select.select([pidfd], [], [], timeout)
                finally:
                    os.close(pidfd)

    def _drop(self) -> None:
        if self._sock is not None and self._owner == os.getpid():
            self._sock.close()
        self._sock = None

    def _connected(self) -> socket.socket:
        if self._sock is not None and self._owner == os.getpid():
            return self._sock
        self._sock = None  # a connection inherited over fork belongs to the parent
        os.makedirs(self.run_dir, exist_ok=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            sock = self._try_connect()
            if sock is None:
                if self._start() == "busy":
                    time.sleep(0.01)  # another zygote holds the lock: binding, or exiting
                continue
            try:
                _send(sock, {"op": "hello", "identity": identity()})
                reply, _ = _recv(sock)
            except OSError:
                reply = None
            if reply is None:
                sock.close()  # accepted by a zygote on its way out: try again
                continue
            if "pid" not in reply:
                sock.close()
                raise Refused(str(reply.get("error", "the zygote refused")))
            self._sock, self._owner, self._zygote = sock, os.getpid(), int(str(reply["pid"]))
            return sock
        raise Refused(f"no zygote answers in {self.run_dir}")

    def _try_connect(self) -> socket.socket | None:
        dirfd = os.open(self.run_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        sock.settimeout(REPLY_TIMEOUT)  # a stopped zygote must not hang the caller
        try:
            sock.connect(_path(dirfd))
            return sock
        except OSError:
            sock.close()
            return None
        finally:
            os.close(dirfd)

    def _start(self) -> str:
        """Start a zygote; ``"ok"``, or ``"busy"`` when another one holds the lock."""
        r, w = os.pipe()
        argv = [sys.executable, "-m", "layerfs.drivers.fuse.zygote", self.run_dir]
        try:
            proc = subprocess.Popen(
                [*argv, "--ready-fd", str(w)], pass_fds=(w,), stdin=subprocess.DEVNULL
            )
        except OSError as exc:
            os.close(r)
            os.close(w)
            raise Refused(f"cannot start a zygote: {exc}") from exc
        os.close(w)
        try:
            line = read_line(r, START_TIMEOUT)
        finally:
            os.close(r)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        if line.startswith(("ok", "busy")):
            return line.split()[0]
        raise Refused(f"the zygote did not start ({line or 'no answer'})")


# -- the zygote ------------------------------------------------------------------------------


def _preload() -> None:
    """Import everything a server runs, so forked servers share it."""
    import argparse  # noqa: F401 - the server parses its arguments
    import logging.handlers  # noqa: F401

    from . import server  # pulls in fs, ops, session and the union logic

    server._parser()


class Zygote:
    """The daemon's state: listening socket, connections and live servers.

    Args:
        run_dir: where the socket and lock live.
    """

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.me = identity()
        self.conns: dict[int, socket.socket] = {}
        self.servers: dict[int, int] = {}  # pidfd -> pid
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.exiting = False

    def bind(self) -> None:
        """Replace a dead zygote's socket with ours and listen (the lock is held)."""
        dirfd = os.open(self.run_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(_path(dirfd))
            old = os.umask(0o077)
            try:
                self.listener.bind(_path(dirfd))
            finally:
                os.umask(old)
        finally:
            os.close(dirfd)
        self.listener.listen(64)

    def serve(self) -> None:
        """Answer connections until no connection and no server is left."""
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        first_deadline = time.monotonic() + FIRST_CONNECTION
        while True:
            if not self.conns and not self.servers:
                if self.exiting or time.monotonic() > first_deadline:
                    return
            timeout = None if self.conns or self.servers else FIRST_CONNECTION * 1000
            for fd, _ in poller.poll(timeout):
                if fd == self.listener.fileno():
                    self._accept(poller)
                elif fd in self.servers:
                    self._reap(poller, fd)
                elif fd in self.conns:
                    self._answer(poller, fd)

    def _accept(self, poller: select.poll) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        uid = int.from_bytes(creds[4:8], sys.byteorder)
        if uid != os.geteuid():
            conn.close()  # a server would run with our credentials, not the caller's
            return
        self.conns[conn.fileno()] = conn
        poller.register(conn, select.POLLIN)
        self.exiting = True  # from now on, exit once nothing is left

    def _reap(self, poller: select.poll, pidfd: int) -> None:
        pid = self.servers.pop(pidfd, 0)
        poller.unregister(pidfd)
        os.close(pidfd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)

    def _answer(self, poller: select.poll, fd: int) -> None:
        conn = self.conns[fd]
        try:
            msg, fds = _recv(conn)
        except OSError:
            msg, fds = None, []
        if msg is None:
            poller.unregister(fd)
            del self.conns[fd]
            conn.close()
            return
        try:
            reply = self._handle(poller, msg, fds)
        finally:
            for x in fds:
                os.close(x)
        with contextlib.suppress(OSError):
            _send(conn, reply)
        if "pid" in reply:
            _settle()  # after answering: the caller does not wait for it

    def _handle(self, poller: select.poll, msg: dict[str, object], fds: list[int]) -> dict:
        op = msg.get("op")
        if op == "hello":
            if msg.get("identity") != self.me:
                return {"error": "the caller runs in other namespaces or under another root"}
            return {"pid": os.getpid()}
        if op == "bye":
            # Servers the caller just stopped may not be reaped yet: count only live ones.
            for pidfd, pid in list(self.servers.items()):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        continue
                del self.servers[pidfd]
                poller.unregister(pidfd)
                os.close(pidfd)
            left = len(self.conns) - 1
            return {"exiting": left == 0 and not self.servers}
        words = msg.get("argv")
        if op == "spawn" and len(fds) == 1 and isinstance(words, list):
            argv = [str(a) for a in words]
            try:
                pid = self._fork(argv, fds[0])
            except SystemExit:  # argparse's way to say the arguments are bad
                return {"error": f"bad server arguments {argv!r}"}
            pidfd = os.pidfd_open(pid)
            self.servers[pidfd] = pid
            poller.register(pidfd, select.POLLIN)
            return {"pid": pid}
        return {"error": f"bad request {op!r}"}

    def _fork(self, argv: list[str], ready_fd: int) -> int:
        from . import server

        # Parsed here, not in the server: parsing dirties hundreds of KiB of shared pages.
        args = server._parse([*argv, "--ready-fd", str(ready_fd)])
        pid = os.fork()
        if pid:
            return pid
        status = 1
        try:
            # Nothing of the zygote's but the ready pipe (and /dev/null stdio) stays open.
            os.closerange(3, ready_fd)
            os.closerange(ready_fd + 1, os.sysconf("SC_OPEN_MAX"))
            os.setsid()
            _name("layerfs-fuse")
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            gc.enable()
            status = server.main_parsed(args)
        finally:
            os._exit(status)


def _settle() -> None:
    """Collect this zygote's garbage, then freeze the rest for the next fork.

    Frozen objects stay shared: a forked server's collections skip them
    instead of writing to (and so copying) their pages.
    """
    gc.collect()
    gc.freeze()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m layerfs.drivers.fuse.zygote RUN_DIR --ready-fd N``."""
    import argparse

    ap = argparse.ArgumentParser(prog="layerfs-fuse-zygote", description=__doc__)
    ap.add_argument("run_dir")
    ap.add_argument("--ready-fd", type=int, required=True)
    args = ap.parse_args(argv)
    run_dir = os.path.abspath(args.run_dir)
    gc.disable()  # no collections fragment the heap the servers will share
    daemonize()
    _name("layerfs-zygote")
    ready = args.ready_fd
    lock = os.open(os.path.join(run_dir, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        _tell(ready, "busy")  # another zygote serves this run dir
        return 0
    try:
        _preload()
        _settle()
        zygote = Zygote(run_dir)
        zygote.bind()
    except (OSError, ImportError) as exc:
        _tell(ready, f"error {exc}")
        return 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _tell(ready, f"ok {os.getpid()}")
    try:
        zygote.serve()
    finally:
        # Still under the lock: no newer zygote's socket can be removed here.
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(run_dir, SOCKET))
    return 0


def _name(comm: str) -> None:
    """Set the process name ``ps`` shows: forked servers share the zygote's command line."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write(comm)


def _tell(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, line.encode() + b"\n")
        os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
