"""Opening stores: drivers recorded, defaults, options, the public surface, closing."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

import layerfs
from layerfs import errors


def test_reopen_with_other_driver_is_refused(tmp_path: Path) -> None:
    with layerfs.Store(tmp_path, driver="copy") as s:
        s.prepare("a")
    with pytest.raises(errors.FailedPrecondition, match="copy"):
        layerfs.Store(tmp_path, driver="overlay")
    with layerfs.Store(tmp_path) as s:  # the recorded driver
        assert s.driver_name == "copy"
        assert [i.name for i in s.walk()] == ["a"]


def test_unknown_driver(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="no storage driver named 'nope'"):
        layerfs.Store(tmp_path, driver="nope")


def test_copy_rejects_options(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument):
        layerfs.Store(tmp_path, driver="copy", options={"size": "1"})


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    s = layerfs.Store(tmp_path, driver="copy")
    s.close()
    s.close()
    with pytest.raises(errors.FailedPrecondition):
        s.prepare("a")


def test_default_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert layerfs.default_root() == Path("/var/lib/layerfs")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert layerfs.default_root() == tmp_path / "layerfs"


def test_open_probes_a_driver(tmp_path: Path) -> None:
    with layerfs.open(tmp_path / "s") as s:
        assert s.driver_name in ("overlay", "fuse", "copy")
        assert layerfs.available_drivers(tmp_path)[s.driver_name] is None


def test_entry_points_register_builtin_drivers() -> None:
    names = set(layerfs.available_drivers())
    assert {"copy", "overlay", "fuse", "devmapper"} <= names


def test_public_surface() -> None:
    assert set(layerfs.__all__) == {
        "Store",
        "open",
        "Kind",
        "Info",
        "Usage",
        "Mount",
        "Change",
        "ChangeKind",
        "Driver",
        "errors",
        "available_drivers",
        "default_root",
    }
    for name in [
        "NotFound",
        "AlreadyExists",
        "FailedPrecondition",
        "InvalidArgument",
        "Unsupported",
        "Busy",
        "NoSpace",
        "Corrupt",
    ]:
        assert issubclass(getattr(errors, name), errors.LayerfsError)


def _worker(root: str, prefix: str, count: int) -> None:
    with layerfs.Store(root, driver="copy") as s:
        for i in range(count):
            s.prepare(f"{prefix}-{i}", "base")
            s.commit(f"{prefix}-c{i}", f"{prefix}-{i}")


def test_two_processes_share_one_root(tmp_path: Path) -> None:
    with layerfs.Store(tmp_path, driver="copy") as s:
        s.prepare("b")
        s.commit("base", "b")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), p, 40)) for p in ("x", "y")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with layerfs.Store(tmp_path) as s:
        names = {i.name for i in s.walk("kind==committed")}
        assert len(names) == 81
        assert s.check() == []


def test_failed_commit_and_remove_leave_the_snapshot_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with layerfs.Store(tmp_path, driver="copy") as s:
        s.prepare("a", labels={"x": "1"})
        driver = s._driver

        def refuse(*args: object) -> None:
            raise errors.Busy("device is busy")

        monkeypatch.setattr(driver, "commit", refuse)
        with pytest.raises(errors.Busy):
            s.commit("c", "a")
        info = s.stat("a")
        assert info.kind is layerfs.Kind.ACTIVE and dict(info.labels) == {"x": "1"}
        monkeypatch.undo()
        s.commit("c", "a")

        monkeypatch.setattr(driver, "remove", refuse)
        with pytest.raises(errors.Busy):
            s.remove("c")
        assert s.stat("c").kind is layerfs.Kind.COMMITTED
        monkeypatch.undo()
        s.remove("c")
        assert s.check() == []
