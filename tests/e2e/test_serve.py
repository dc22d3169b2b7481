"""``layerfs serve`` as a daemon: one server per socket, stale sockets, SIGTERM with containers running."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import subprocess
import sys
import time
import uuid

from stack import BUSYBOX, Images

from layerfs import Store
from layerfs.testing.containerd import CtrError, Serve, wait_until


def test_socket_is_private_and_held_by_one_server(make_stack) -> None:
    stack = make_stack(["overlay"])
    server = stack.servers["overlay"]
    assert stat.S_IMODE(os.stat(server.socket).st_mode) == 0o600
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "layerfs.cli",
            "--root",
            str(server.root),
            "serve",
            "--socket",
            str(server.socket),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 6, second.stderr  # Busy
    assert "another layerfs serve is running" in second.stderr
    # The first one still answers.
    stack.ctd.ctr("snapshots", "--snapshotter", "layerfs-overlay", "ls")


def test_stale_socket_is_replaced(make_stack) -> None:
    stack = make_stack(["overlay"])
    old = stack.servers["overlay"]
    old.proc.send_signal(signal.SIGKILL)
    old.stop()
    assert os.path.exists(old.socket)  # left behind by the killed server
    new = Serve(old.root, "overlay", old.socket, old.root.parent / "serve2.log")
    stack.servers["overlay"] = new
    _reconnected(stack.ctd)
    stack.ctd.ctr("snapshots", "--snapshotter", "layerfs-overlay", "prepare", "after-restart")
    with Store(old.root) as store:
        assert "after-restart" in [i.name.rsplit("/", 1)[1] for i in store.walk()]


def test_sigterm_leaves_running_containers_alone(make_stack, images: Images) -> None:
    stack = make_stack(["overlay"])
    ctr = stack.ctd.ctr
    ctr("images", "import", "--snapshotter", "layerfs-overlay", str(images.busybox))
    name = f"c-{uuid.uuid4().hex[:8]}"
    ctr("run", "-d", "--snapshotter", "layerfs-overlay", BUSYBOX, name, "sleep", "600")
    server = stack.servers["overlay"]
    started = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - started < 10
    assert not os.path.exists(server.socket)
    # The container keeps running on its snapshot, which stays mounted and usable.
    assert "RUNNING" in ctr("tasks", "ls")
    out = ctr(
        "tasks",
        "exec",
        "--exec-id",
        "e1",
        name,
        "sh",
        "-c",
        "cat /data/keep; echo x > /new; cat /new",
    )
    assert out.split() == ["keep", "x"]
    # A new server picks up where the old one stopped; cleanup goes through it.
    stack.servers["overlay"] = Serve(
        server.root, "overlay", server.socket, server.root.parent / "serve2.log"
    )
    # containerd redials the proxy with a back-off; a collection it runs
    # before it reconnects fails and is not retried, so wait for the link.
    _reconnected(stack.ctd)
    ctr("tasks", "kill", "-s", "SIGKILL", name)
    _wait_stopped(ctr, name)
    ctr("tasks", "rm", name)
    ctr("containers", "rm", name)
    ctr("images", "rm", "--sync", BUSYBOX)
    with Store(server.root) as store:
        # Under load runc can still hold the rootfs when containerd first
        # removes the snapshot (Busy); containerd's scheduled collection
        # tries again, so give it a bounded while.
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not list(store.walk()), "containerd's collection", timeout=60)
        assert list(store.walk()) == [], stack.logs()
        assert store.check() == []


def _wait_stopped(ctr, name: str) -> None:
    deadline = time.monotonic() + 30
    while "RUNNING" in ctr("tasks", "ls") and time.monotonic() < deadline:
        time.sleep(0.1)


def _reconnected(ctd) -> None:
    """Wait for containerd's gRPC client, which redials a broken connection with a backoff."""
    snap = ("snapshots", "--snapshotter", "layerfs-overlay")

    def answers() -> bool:
        try:
            ctd.ctr(*snap, "prepare", "probe")  # reaches the server, unlike ls
        except CtrError:
            return False
        ctd.ctr(*snap, "rm", "probe")
        return True

    wait_until(answers, "containerd reconnecting to the new server")
