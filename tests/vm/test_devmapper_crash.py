"""Crash recovery: kill the process at every step of a dm transaction, reopen, check.

A forked child opens the store and runs one operation with
``LAYERFS_DM_FAULT`` naming a step; it dies there by SIGKILL. The parent
reopens the store and checks that the journal left nothing behind: no
pending transaction, no thin id of the store's range without a record, no
record without a thin device, no dm device without a record.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from layerfs.drivers.devmapper import dmsetup, faults

import layerfs
from layerfs import errors

OPTIONS = {"data_size": "256M", "base_size": "64M", "min_free_percent": "0", "udev": "off"}


def _in_child(root: Path, step: str, action: Callable[[layerfs.Store], None]) -> None:
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.environ[faults.ENV] = step
            store = layerfs.Store(root, driver="devmapper", options=OPTIONS)
            action(store)
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"the child did not die at step {step} (status {status})"
    )


def _assert_consistent(store: layerfs.Store) -> None:
    driver = store._driver  # noqa: SLF001 - the journal is what is under test
    journal = driver.journal
    assert journal.pending() is None
    records = journal.devices()
    recorded = {rec.thin for rec in records.values()}
    base = driver.config.range_base
    last = int(driver.state.get("next") or 1)
    for thin in range(base + 1, base + last + 1):
        assert driver.pool.exists(thin) == (thin in recorded), f"thin id {thin}"
    prefix = driver.config.prefix + "-"
    for name in dmsetup.ls():
        if name.startswith(prefix) and name != driver.pool.name:
            assert name[len(prefix) :] in records, f"device {name} has no record"
    assert store.check() == []


def _prepare_child(store: layerfs.Store) -> None:
    store.prepare("child", "parent")


def _prepare_root(store: layerfs.Store) -> None:
    store.prepare("root")


def _remove_parent_child(store: layerfs.Store) -> None:
    store.remove("old")


def _setup(root: Path, mounted_parent: bool) -> None:
    with layerfs.Store(root, driver="devmapper", options=OPTIONS) as store:
        store.prepare("p")
        with store.mounted("p") as path:
            Path(path, "f").write_bytes(b"parent data")
        store.commit("parent", "p")
        store.prepare("o", "parent")
        store.commit("old", "o")
        if mounted_parent:
            store.mount("parent")


CASES = [(step, _prepare_child) for step in faults.STEPS if step.startswith("create-")]
CASES += [(step, _remove_parent_child) for step in faults.STEPS if step.startswith("delete-")]
CASES += [("base-formatting", _prepare_root)]


@pytest.mark.parametrize(("step", "action"), CASES, ids=[c[0] for c in CASES])
def test_crash_at_step(tmp_path: Path, step: str, action: Callable[[layerfs.Store], None]) -> None:
    root = tmp_path / "store"
    # A mounted (so active) parent makes create_snap suspend it.
    mounted = step == "create-suspended"
    if step == "base-formatting":
        layerfs.Store(root, driver="devmapper", options=OPTIONS).close()
    else:
        _setup(root, mounted)
    _in_child(root, step, action)
    store = layerfs.Store(root, driver="devmapper", options=OPTIONS)
    try:
        _assert_consistent(store)
        names = {i.name for i in store.walk()}
        # The interrupted operation either happened or not, and can be redone.
        if action is _prepare_child:
            if "child" not in names:
                store.prepare("child", "parent")
            with store.mounted("child") as path:
                assert Path(path, "f").read_bytes() == b"parent data"
        elif action is _remove_parent_child:
            if "old" in names:
                store.remove("old")
        else:
            if "root" not in names:
                store.prepare("root")
            with store.mounted("root") as path:
                assert os.path.isdir(path)
        _assert_consistent(store)
    finally:
        for info in store.walk():
            with contextlib.suppress(errors.LayerfsError):
                while True:
                    store.unmount(info.name)
        store.close()
