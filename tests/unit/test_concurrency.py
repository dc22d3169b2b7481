"""Two callers on one store at the worst moment: each test forces one interleaving.

Each test opens two ``Store`` objects on one root (as two processes would)
and makes the second one act at a chosen point inside the first one's
operation, through the store's crash points or a wrapped driver method.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import layerfs
from layerfs import _layers, _owner, _records, _store, errors
from layerfs._records import MOUNTED
from layerfs._run import run
from layerfs.testing.suite import build_tar
from layerfs.testing.trees import describe

PAUSE = 0.5  # long enough for the other caller to reach its decision point


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[layerfs.Store, layerfs.Store]]:
    root = tmp_path / "store"
    a = layerfs.Store(root, driver="copy")
    b = layerfs.Store(root, driver="copy")
    try:
        yield a, b
    finally:
        b.close()
        problems = a.check()
        a.close()
        assert problems == []


class Background:
    """Run ``fn`` in a thread; keep its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.done_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:
            self.error = exc
        self.done_at = time.monotonic()

    def join(self) -> Any:
        self._thread.join(60)
        assert not self._thread.is_alive(), "the other caller never finished"
        if self.error is not None:
            raise self.error
        return self.result


def _rows(store: layerfs.Store) -> list[_records.MountRecord]:
    with store._meta.transaction(write=False) as db:
        return _records.mount_rows(db)


def _once(fn: Callable[[], None]) -> Callable[[], None]:
    fired = []

    def wrapper() -> None:
        if not fired:
            fired.append(1)
            fn()

    return wrapper


# -- item 6: a mount joins only a finished mount --------------------------------------


def test_mount_waits_for_a_mount_in_progress(
    pair: tuple[layerfs.Store, layerfs.Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    a.prepare("k")
    other: list[Background] = []
    finished_at: list[float] = []

    @_once
    def start_other() -> None:
        other.append(Background(lambda: b.mount("k")))
        time.sleep(PAUSE)
        finished_at.append(time.monotonic())

    def hook(name: str) -> None:
        if name == "mount:recorded":
            start_other()

    monkeypatch.setattr(_store, "crash_point", hook)
    path = a.mount("k")
    assert other[0].join() == path
    # The second caller got its path only once the first mount was done.
    assert other[0].done_at >= finished_at[0]
    (row,) = _rows(a)
    assert (row.refs, row.state) == (2, MOUNTED)
    a.unmount("k")
    b.unmount("k")
    assert _rows(a) == []


def test_mount_during_unmount_keeps_its_reference(
    pair: tuple[layerfs.Store, layerfs.Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    a.prepare("k")
    other: list[Background] = []
    real_drop = a._ctx.drop_mount

    def slow_drop(m: _records.MountRecord) -> None:
        other.append(Background(lambda: b.mount("k")))
        time.sleep(PAUSE)
        real_drop(m)

    path = a.mount("k")
    monkeypatch.setattr(a._ctx, "drop_mount", slow_drop)
    a.unmount("k")
    assert other[0].join() == path
    (row,) = _rows(a)
    assert (row.refs, row.state) == (1, MOUNTED)
    b.unmount("k")  # the reference taken during the unmount is still there
    assert _rows(a) == []


# -- item 9 and the vanishing path: decisions inside the transaction ---------------


def test_commit_refuses_a_mount_made_while_it_ran(
    pair: tuple[layerfs.Store, layerfs.Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    a.prepare("k")
    real_usage = a._driver.usage
    mount_now = _once(lambda: b.mount("k") and None)

    def usage(ref: Any) -> Any:
        mount_now()
        return real_usage(ref)

    monkeypatch.setattr(a._driver, "usage", usage)
    with pytest.raises(errors.Busy):
        a.commit("c", "k")
    assert a.stat("k").kind is layerfs.Kind.ACTIVE
    b.unmount("k")
    monkeypatch.undo()
    a.commit("c", "k")


def test_mount_of_a_snapshot_removed_meanwhile_is_not_found(
    pair: tuple[layerfs.Store, layerfs.Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    a.prepare("k")
    real_direct = b._driver.direct_path
    remove_now = _once(lambda: a.remove("k"))

    def direct_path(ref: Any) -> Any:
        remove_now()
        return real_direct(ref)

    monkeypatch.setattr(b._driver, "direct_path", direct_path)
    with pytest.raises(errors.NotFound):
        b.mount("k")
    assert _rows(a) == []


# -- item 7: one layer applied twice at once ----------------------------------------------

LAYER = build_tar([("etc", None), ("etc/hostname", b"box\n")])


def test_concurrent_apply_of_one_layer_returns_one_info(
    pair: tuple[layerfs.Store, layerfs.Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    other: list[Background] = []

    @_once
    def start_other() -> None:
        other.append(Background(lambda: b.apply(io.BytesIO(LAYER))))
        time.sleep(PAUSE)

    def hook(name: str) -> None:
        if name == "apply:marked":
            start_other()

    monkeypatch.setattr(_layers, "crash_point", hook)
    info = a.apply(io.BytesIO(LAYER))
    assert other[0].join() == info
    assert [i.name for i in a.walk()] == [info.name]


def test_apply_whose_driver_commit_fails_leaves_nothing(
    pair: tuple[layerfs.Store, layerfs.Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = pair

    def broken(ref: Any) -> None:
        raise errors.NoSpace("disk full while freezing the layer")

    monkeypatch.setattr(a._driver, "commit", broken)
    with pytest.raises(errors.NoSpace):
        a.apply(io.BytesIO(LAYER))
    with a._meta.transaction(write=False) as db:
        assert _records.all_records(db) == []
    monkeypatch.undo()
    info = a.apply(io.BytesIO(LAYER))  # a retry starts afresh
    assert describe(a._driver.direct_path(a._ref_from(a._get(info.name))))["etc/hostname"]


# -- item 8: repair leaves a create in progress alone -------------------------------------


def test_repair_leaves_a_create_in_progress_alone(
    pair: tuple[layerfs.Store, layerfs.Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    base = a.apply(io.BytesIO(LAYER)).name
    from layerfs.drivers.copy import driver as copy_driver

    entered = threading.Event()
    release = threading.Event()
    real_copy = copy_driver.copy_tree

    def slow_copy(src: Path, dst: Path) -> None:
        entered.set()
        release.wait(30)
        real_copy(src, dst)

    monkeypatch.setattr(copy_driver, "copy_tree", slow_copy)
    create = Background(lambda: a.prepare("child", base))
    assert entered.wait(30)
    checker = Background(lambda: b.check(repair=True))
    time.sleep(PAUSE)
    release.set()
    create.join()
    assert checker.join() == []
    with a.mounted("child") as root:
        assert Path(root, "etc/hostname").read_text() == "box\n"


# -- item 11: owners in another pid namespace ---------------------------------------------


def test_owner_in_another_pid_namespace_counts_as_alive() -> None:
    me = _owner.current()
    pid, start, boot, ns = me.split(":")
    nobody = "999999999"  # no process has it here
    assert _owner.is_alive(me)
    assert not _owner.is_alive(f"{nobody}:{start}:{boot}:{ns}")
    assert _owner.is_alive(f"{nobody}:{start}:{boot}:{int(ns) + 1}")
    # Another boot proves it dead, whatever the namespace.
    assert not _owner.is_alive(f"{nobody}:{start}:not-this-boot:{int(ns) + 1}")


# -- item 12: a failed open releases what it opened -----------------------------------------


def test_failed_recovery_closes_the_database_and_driver(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[str] = []
    real_meta_close = _store.Metadata.close

    def meta_close(self: Any) -> None:
        closed.append("metadata")
        real_meta_close(self)

    def recover(*args: Any, **kwargs: Any) -> list[str]:
        raise errors.Corrupt("recovery failed")

    from layerfs.drivers.copy.driver import CopyDriver

    monkeypatch.setattr(_store.Metadata, "close", meta_close)
    monkeypatch.setattr(CopyDriver, "close", lambda self: closed.append("driver"), raising=False)
    monkeypatch.setattr(_store._recovery, "find_problems", recover)
    with pytest.raises(errors.Corrupt):
        layerfs.Store(tmp_path / "s", driver="copy")
    assert sorted(closed) == ["driver", "metadata"]


# -- item 4 (host part): external commands run in the C locale ----------------------------


def test_commands_run_in_the_c_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANGUAGE", "de")
    out = run(["sh", "-c", 'echo "$LC_ALL/${LANGUAGE:-unset}"'])
    assert out.strip() == "C/unset"
    assert os.environ["LC_ALL"] == "de_DE.UTF-8"  # our own environment is left alone
