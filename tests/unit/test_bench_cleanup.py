"""The bench's cleanup registry and signal handling (no privileges needed)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from layerfs.benchmarks import cleanup as cl


def test_steps_run_newest_first_and_failures_do_not_stop_the_rest(tmp_path: Path) -> None:
    done: list[str] = []
    reg = cl.Cleanup(tmp_path)
    reg.push("first", lambda: done.append("first"))

    def boom() -> None:
        done.append("boom")
        raise OSError("device busy")

    reg.push("broken", boom)
    reg.push("last", lambda: done.append("last"))
    problems = reg.run_all()
    assert done == ["last", "boom", "first"]
    assert problems == ["broken: device busy"]
    assert len(reg) == 0
    assert reg.run_all() == problems  # running again does nothing new


def test_release_runs_one_step_now_and_discard_forgets_it(tmp_path: Path) -> None:
    done: list[str] = []
    reg = cl.Cleanup(tmp_path)
    a = reg.push("a", lambda: done.append("a"))
    b = reg.push("b", lambda: done.append("b"))
    reg.release(a)
    assert done == ["a"]
    reg.discard(b)
    reg.run_all()
    assert done == ["a"]


def test_sweep_of_an_untouched_directory_finds_nothing(tmp_path: Path) -> None:
    assert cl.mounts_below(tmp_path) == []
    assert cl.loops_below(tmp_path) == []
    assert cl.sweep(tmp_path, dm_prefix="lfsbench-none") == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_become_keyboard_interrupt_inside_the_block(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt), cl.interrupt_on_signals():
        os.kill(os.getpid(), sig)
        for _ in range(1000):
            pass
    assert signal.getsignal(sig) == before


def test_signals_are_ignored_while_cleaning_up(tmp_path: Path) -> None:
    reg = cl.Cleanup(tmp_path)
    reached: list[bool] = []

    def step() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        reached.append(True)

    reg.push("signals itself", step)
    with cl.interrupt_on_signals():
        reg.run_all()
    assert reached == [True]
    assert reg.problems == []


def fake_dm(sysfs: Path, node: str, name: str, slaves: list[str], holders: list[str]) -> None:
    d = sysfs / node
    (d / "dm").mkdir(parents=True)
    (d / "dm" / "name").write_text(name + "\n")
    (d / "slaves").mkdir()
    (d / "holders").mkdir()
    for s in slaves:
        (d / "slaves" / s).touch()
    for h in holders:
        (d / "holders" / h).touch()


def test_dm_devices_on_our_loops_come_holders_first(tmp_path: Path) -> None:
    # pool dm-0 on loop3+loop4 (ours); thin dm-1, dm-2 in it; dm-9 on someone else's loop.
    fake_dm(tmp_path, "dm-0", "layerfs-ab-pool", ["loop3", "loop4"], ["dm-1", "dm-2"])
    fake_dm(tmp_path, "dm-1", "layerfs-ab-7", ["dm-0"], [])
    fake_dm(tmp_path, "dm-2", "layerfs-ab-8", ["dm-0"], [])
    fake_dm(tmp_path, "dm-9", "other-pool", ["loop0"], [])
    out = cl.dm_devices_on(["/dev/loop3", "/dev/loop4"], sysfs=tmp_path)
    assert out == ["layerfs-ab-7", "layerfs-ab-8", "layerfs-ab-pool"]
    assert cl.dm_devices_on([], sysfs=tmp_path) == []
    assert cl.dm_devices_on([], prefix="other", sysfs=tmp_path) == ["other-pool"]
