"""An interrupted or crashing bench leaves no mount, loop device or FUSE server behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from layerfs.benchmarks import cleanup as cl
from layerfs.benchmarks.runner import RunConfig, run_bench
from layerfs.benchmarks.workloads import load

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root")


def fuse_servers_below(path: Path) -> list[int]:
    """Pids of processes whose command line names a path below ``path``."""
    pids: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "fuse" in cmdline and str(path) in cmdline:
            pids.append(int(proc.name))
    return pids


def assert_nothing_left(scratch: Path) -> None:
    assert cl.mounts_below(scratch) == []
    assert cl.loops_below(scratch) == []
    assert fuse_servers_below(scratch) == []
    assert list(scratch.iterdir()) == []  # the run's own directory is gone too


def wait_for(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize(
    ("sig", "everything"), [(signal.SIGINT, True), (signal.SIGTERM, False)], ids=["INT", "TERM"]
)
def test_signal_mid_run_cleans_up(tmp_path: Path, sig: signal.Signals, everything: bool) -> None:
    from layerfs.benchmarks.columns import driver_reasons

    columns = "native,copy"
    peer = False
    if everything:
        # Every kind of column, FUSE servers included (ours and the peer's).
        columns += ",overlay"
        if driver_reasons(tmp_path).get("fuse") is None:
            columns += ",fuse"
        peer = shutil.which("fuse-overlayfs") is not None
        if peer:
            columns += ",fuse-overlayfs"
    argv = [sys.executable, "-m", "layerfs.benchmarks.cli", "--driver", columns]
    # The default preset: long enough that the signal lands mid-run.
    argv += ["--workload", "read,depth,scale", "--scratch", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        want = columns.count(",") + 1
        started = wait_for(lambda: len(cl.loops_below(tmp_path)) >= want, 60)
        assert started, "the bench never made its scratch filesystems"
        if peer:
            # Wait until FUSE servers run, so the test covers killing them.
            wait_for(lambda: any("/peer/" in m for m in cl.mounts_below(tmp_path)), 60)
        else:
            time.sleep(2)
        assert proc.poll() is None, "the bench ended before it could be interrupted"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            cl.sweep(tmp_path)
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err
    assert_nothing_left(tmp_path)


def test_crash_mid_workload_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = load("copy-up")

    def crash(self, target):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("a bug in a workload")

    monkeypatch.setattr(cls, "run", crash)
    cfg = RunConfig(["copy-up"], ["native", "copy", "overlay"], preset="quick", scratch=tmp_path)
    with pytest.raises(ZeroDivisionError):
        run_bench(cfg)
    assert_nothing_left(tmp_path)
