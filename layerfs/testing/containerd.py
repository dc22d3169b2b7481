"""A private containerd, ``layerfs serve`` and a registry, for tests and the bench.

Each ``Containerd`` has its own root, state, sockets and config; it never
touches a system containerd. Facts relied on (containerd 1.6):

- ``proxy_plugins`` entries of ``type = "snapshot"`` become snapshotters
  named after the entry (``--snapshotter layerfs-overlay``).
- The runc shim it starts outlives it unless its tasks are deleted first;
  the shim socket lives under ``/run/containerd/s/`` named by a hash of
  our socket path, so it cannot meet a system containerd's shims. Shims
  are found afterwards by our socket path on their command line.
- runc keeps container state under ``/run/containerd/runc/<namespace>``:
  every container here has a random name, so nothing can collide there.
- ``mount.fuse`` runs the ``layerfs`` command for ``fuse.layerfs`` mounts:
  the directory of this Python's scripts is put first on ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = [
    "CtrError",
    "wait_until",
    "Containerd",
    "Serve",
    "Registry",
    "free_port",
    "kill_process_tree_matching",
]

NAMESPACE = "layerfs-test"


class CtrError(subprocess.CalledProcessError):
    """A failed ``ctr`` command; its message carries ctr's stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}: {self.stderr}"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return env


def _wait_socket(path: Path, proc: subprocess.Popen[bytes], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {path}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(path))
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {path} within {timeout} s")


def _stop(proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def kill_process_tree_matching(needle: str) -> list[int]:
    """SIGKILL every process whose command line contains ``needle``; return their pids."""
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    return killed


def unmount_under(base: Path) -> None:
    """Lazily unmount everything mounted under ``base``, deepest first."""
    prefix = str(base.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        targets = [line.split()[4] for line in f]
    for target in sorted((t for t in targets if t.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


class Serve:
    """``layerfs serve`` for one store, in a child process.

    Args:
        root: the store root.
        driver: the layerfs driver.
        socket_path: where it listens.
        log: file for its output.
        options: driver options.
        timeout: seconds to wait for it to listen.
    """

    def __init__(
        self,
        root: Path,
        driver: str,
        socket_path: Path,
        log: Path,
        options: Mapping[str, str] | None = None,
        timeout: float = 60,
    ) -> None:
        self.root, self.driver, self.socket = root, driver, socket_path
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log, "ab")  # closed in stop()
        cmd = [sys.executable, "-m", "layerfs.cli", "--root", str(root), "--driver", driver]
        for k, v in (options or {}).items():
            cmd += ["-o", f"{k}={v}"]
        cmd += ["serve", "--socket", str(socket_path)]
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )
        try:
            _wait_socket(socket_path, self.proc, "layerfs serve", timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int | None:
        """SIGTERM and wait; returns the exit status."""
        _stop(self.proc)
        self._log.close()
        return self.proc.returncode


class Containerd:
    """A containerd of its own under ``base``, with snapshotters at ``proxies``.

    Args:
        base: a directory for its root, state, sockets, config and log.
        proxies: proxy snapshotter name -> socket path.
        address: its socket (default ``base/containerd.sock``; unix socket
            paths must stay under 108 bytes).
    """

    def __init__(
        self, base: Path, proxies: Mapping[str, Path] | None = None, address: Path | None = None
    ) -> None:
        self.base = base
        self.address = address or base / "containerd.sock"
        base.mkdir(parents=True, exist_ok=True)
        lines = [
            "version = 2",
            f'root = "{base}/root"',
            f'state = "{base}/state"',
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
            "[grpc]",
            f'  address = "{self.address}"',
            "[ttrpc]",
            f'  address = "{self.address}.ttrpc"',
            "[proxy_plugins]",
        ]
        for name, sock in (proxies or {}).items():
            lines += [
                f'  [proxy_plugins."{name}"]',
                '    type = "snapshot"',
                f'    address = "{sock}"',
            ]
        (base / "config.toml").write_text("\n".join(lines) + "\n")
        self._log = open(base / "containerd.log", "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            ["containerd", "--config", str(base / "config.toml")],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=_env(),
            start_new_session=True,
        )
        try:
            _wait_socket(self.address, self.proc, "containerd", 60)
        except BaseException:
            self.stop()
            raise

    def ctr(self, *args: str, check: bool = True, timeout: float = 600) -> str:
        """Run ``ctr`` against this containerd; return its output.

        Raises:
            CtrError: it failed (with ``check``); output attached.
        """
        return self.ctr_bytes(*args, check=check, timeout=timeout).decode(errors="replace")

    def ctr_bytes(self, *args: str, check: bool = True, timeout: float = 600) -> bytes:
        """``ctr`` as ``ctr()``, its output as bytes (``snapshots diff`` writes a tar)."""
        cmd = ["ctr", "-a", str(self.address), "-n", NAMESPACE, *args]
        res = subprocess.run(
            cmd, capture_output=True, env=_env(), timeout=timeout, stdin=subprocess.DEVNULL
        )
        if check and res.returncode != 0:
            err = res.stderr.decode(errors="replace")
            raise CtrError(res.returncode, cmd, res.stdout, err)
        return res.stdout

    def run(
        self, image: str, name: str, snapshotter: str, *command: str, rm: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``ctr run`` a container to its end (``--rm`` unless told); returns output and status."""
        cmd = ["ctr", "-a", str(self.address), "-n", NAMESPACE, "run"]
        cmd += ["--rm"] if rm else []
        cmd += ["--snapshotter", snapshotter, image, name, *command]
        return subprocess.run(
            cmd, capture_output=True, text=True, env=_env(), timeout=600, stdin=subprocess.DEVNULL
        )

    def run_output(self, image: str, snapshotter: str, script: str, attempts: int = 3) -> str:
        """The whole standard output of ``sh -ec script`` in a fresh container.

        A runtime can lose the tail of a container's output when the process
        exits at once (containerd and docker both have such reports, and
        ``ctr run`` did so here under load). The script's output is kept in a
        file in the container and printed with its byte count after it; a run
        whose output came short is run again, up to ``attempts`` times.

        Raises:
            AssertionError: the script failed, or every run's output came short.
        """
        wrapped = (
            f"( {script} ) > /tmp/.layerfs-out\n"
            'cat /tmp/.layerfs-out; echo "__END__ $(wc -c < /tmp/.layerfs-out)"'
        )
        tail = ""
        for _ in range(attempts):
            name = f"c-{uuid.uuid4().hex[:10]}"
            res = self.run(image, name, snapshotter, "sh", "-ec", wrapped)
            assert res.returncode == 0, f"container failed ({res.returncode}): {res.stderr}"
            body, sep, end = res.stdout.rpartition("__END__ ")
            if sep and end.strip().isdigit() and int(end) == len(body.encode()):
                return body
            tail = res.stdout[-200:]
        raise AssertionError(f"the container's output came short {attempts} times: {tail!r}")

    def _clear(self) -> None:
        for task in self.ctr("tasks", "ls", "-q", check=False).split():
            self.ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
            self.ctr("tasks", "rm", "-f", task, check=False)
        for c in self.ctr("containers", "ls", "-q", check=False).split():
            self.ctr("containers", "rm", c, check=False)

    def stop(self) -> None:
        """Delete tasks and containers, stop containerd and its shims, unmount what is left."""
        try:
            if self.proc.poll() is None:
                self._clear()
        finally:
            _stop(self.proc)
            self._log.close()
            kill_process_tree_matching(str(self.address))
            unmount_under(self.base)

    def __enter__(self) -> Containerd:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``predicate`` until true (containerd's garbage collection runs in the background).

    Raises:
        TimeoutError: still false after ``timeout`` seconds; ``what`` names it.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Registry:
    """Debian's ``docker-registry`` (the OCI distribution server) on 127.0.0.1.

    Args:
        base: a directory for its storage, config and log.
    """

    def __init__(self, base: Path) -> None:
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        config = base / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {base}/storage\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        self._log = open(base / "registry.log", "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait()
        except BaseException:
            self.stop()
            raise

    def _wait(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.proc.returncode}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://{self.host}/v2/", timeout=2) as r:
                    if r.status == 200:
                        return
            time.sleep(0.1)
        raise TimeoutError(f"docker-registry did not answer on {self.host}")

    def stop(self) -> None:
        """Stop the registry."""
        _stop(self.proc)
        self._log.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def serving(base: Path, drivers: list[str], sockets: Path) -> Iterator[dict[str, Serve]]:
    """``layerfs serve`` per driver (store ``base/<driver>/store``, socket ``sockets/<driver>``)."""
    started: dict[str, Serve] = {}
    try:
        for d in drivers:
            started[d] = Serve(base / d / "store", d, sockets / d, base / d / "serve.log")
        yield started
    finally:
        for s in started.values():
            s.stop()
