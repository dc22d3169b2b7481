"""Several callers on one store, as root: FUSE server identity, one writable mount,
hung servers, owners in another pid namespace, and check(repair=True) beside
a create in progress on overlay.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from layerfs.drivers.fuse import FuseDriver
from layerfs.drivers.overlay import probe

import layerfs
from layerfs import errors
from layerfs.driver import is_privileged
from layerfs.testing.suite import _unmount_everything

pytestmark = pytest.mark.skipif(not is_privileged(), reason="mounts need root")

FUSE_MISSING = FuseDriver.unavailable_reason(Path(tempfile.gettempdir()))
OVERLAY_MISSING = probe.unavailable_reason(Path(tempfile.gettempdir()))
needs_fuse = pytest.mark.skipif(FUSE_MISSING is not None, reason=f"fuse: {FUSE_MISSING}")


def _driver_params() -> list[object]:
    return [
        pytest.param(
            "overlay",
            marks=pytest.mark.skipif(OVERLAY_MISSING is not None, reason=f"{OVERLAY_MISSING}"),
        ),
        pytest.param("fuse", marks=needs_fuse),
    ]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _close(store: layerfs.Store) -> None:
    _unmount_everything(store)
    store.close()


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


# -- item 3: a FUSE server is known by more than its pid -------------------------------------


@needs_fuse
@pytest.mark.parametrize("old_record", [False, True], ids=["reused-pid", "pid-only-record"])
def test_fuse_never_signals_a_process_that_is_not_its_server(root: Path, old_record: bool) -> None:
    store = layerfs.Store(root, driver="fuse")
    bystander = subprocess.Popen(["sleep", "120"])
    try:
        store.prepare("k")
        store.mount("k")
        (record,) = (root / "fuse" / "run").glob("*.json")
        rec = json.loads(record.read_text())
        server = rec["pid"]
        # As after a reboot or a server crash: the recorded pid is now someone else's.
        rec["pid"] = bystander.pid
        if old_record:
            rec.pop("start", None)
            rec.pop("boot", None)
        record.write_text(json.dumps(rec))
        store.unmount("k")
        assert _gone(server), "the real server did not exit after its unmount"
        assert bystander.poll() is None, "an unrelated process was killed"
        store.remove("k")
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
        _close(store)


# -- item 5: one writable mount per active snapshot ------------------------------------------


@pytest.mark.parametrize("driver", _driver_params())
def test_second_read_write_mount_is_refused(driver: str, root: Path, tmp_path: Path) -> None:
    store = layerfs.Store(root, driver=driver)
    try:
        store.prepare("base")
        store.commit("p", "base")
        store.prepare("k", "p")  # on a parent: a real union, upper and work dirs
        path = store.mount("k")
        Path(path, "f").write_text("one\n")
        other = tmp_path / "elsewhere"
        other.mkdir()
        with pytest.raises(errors.Busy):
            store.mount("k", other)
        assert not os.path.ismount(other)
        assert store.mount("k") == path  # sharing the first mount is fine
        store.unmount("k")
        store.unmount("k")
        store.commit("c", "k")
        store.view("v1", "c")
        store.view("v2", "c")
        with store.mounted("v1") as a, store.mounted("v2") as b:  # read-only: any number
            assert Path(a, "f").read_text() == Path(b, "f").read_text() == "one\n"
    finally:
        _close(store)


# -- item 10: a stopped FUSE server does not hang open ---------------------------------------


@needs_fuse
def test_open_finishes_and_reports_a_stopped_fuse_server(root: Path) -> None:
    store = layerfs.Store(root, driver="fuse")
    server = 0
    try:
        store.prepare("k")
        path = store.mount("k")
        (record,) = (root / "fuse" / "run").glob("*.json")
        server = json.loads(record.read_text())["pid"]
        os.kill(server, signal.SIGSTOP)
        found: list[list[str]] = []

        def open_and_check() -> None:
            with layerfs.Store(root, driver="fuse") as other:
                found.append(other.check())

        t = threading.Thread(target=open_and_check, daemon=True)
        t.start()
        t.join(60)
        assert not t.is_alive(), "opening the store hung on the stopped server"
        assert any(path in p and "does not answer" in p for p in found[0]), found
    finally:
        if server:
            os.kill(server, signal.SIGCONT)
        _close(store)


# -- item 11: an owner in another pid namespace ---------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys, layerfs
    store = layerfs.Store(sys.argv[1], driver="copy")
    store.prepare("k")
    store.mount("k")
    print("ready", flush=True)
    sys.stdin.read()
    store.unmount("k")
    store.close()
    """
)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare (util-linux)")
def test_owner_in_another_pid_namespace_is_not_taken_for_dead(root: Path) -> None:
    layerfs.Store(root, driver="copy").close()
    child = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", CHILD, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        with layerfs.Store(root, driver="copy") as store:
            # The child holds its mount: nothing is abandoned, nothing to repair.
            assert store.check() == []
            assert store.check(repair=True) == []
            assert len(list(store.walk())) == 1
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
    assert child.returncode == 0
    with layerfs.Store(root, driver="copy") as store:
        assert store.check() == []


# -- item 8 on overlay: the ``.create-*`` dir of a live create ------------------------------


@pytest.mark.skipif(OVERLAY_MISSING is not None, reason=f"overlay: {OVERLAY_MISSING}")
def test_repair_leaves_an_overlay_create_in_progress_alone(root: Path) -> None:
    a = layerfs.Store(root, driver="overlay")
    b = layerfs.Store(root, driver="overlay")
    try:
        a.prepare("base")
        a.commit("c", "base")
        layout = a._driver.layout  # type: ignore[attr-defined]
        real = layout._make_link
        entered, release = threading.Event(), threading.Event()

        def slow_link(snap_id: str) -> str:
            entered.set()
            release.wait(30)
            return str(real(snap_id))

        layout._make_link = slow_link
        result: list[object] = []
        creator = threading.Thread(
            target=lambda: result.append(_catch(lambda: a.prepare("child", "c"))), daemon=True
        )
        creator.start()
        assert entered.wait(30)
        found: list[list[str]] = []
        checker = threading.Thread(target=lambda: found.append(b.check(repair=True)), daemon=True)
        checker.start()
        time.sleep(0.5)
        release.set()
        creator.join(30)
        checker.join(60)
        assert not isinstance(result[0], BaseException), result[0]
        assert found == [[]]
        with a.mounted("child") as path:
            Path(path, "x").write_text("x")
        assert a.check() == []
    finally:
        b.close()
        _close(a)


def _catch(fn: object) -> object:
    try:
        return fn()  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
        return exc
