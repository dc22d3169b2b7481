"""The library knows where it is: store roots overlay cannot use, devices a container lacks.

For each unusable environment: ``Store`` with the driver that cannot work
there fails with ``Unsupported`` saying why and what to do,
``layerfs.open()`` takes the next driver that works, and ``status()``
shows which one and why the others were passed over.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from envtools import run_without_devices

import layerfs
from layerfs import ChangeKind, errors


def _round_trip(store: layerfs.Store) -> None:
    """Prepare, write, delete a parent's file, commit: the change list proves the driver works."""
    store.prepare("base-rw")
    with store.mounted("base-rw") as root:
        Path(root, "etc").mkdir()
        Path(root, "etc", "keep").write_text("1\n")
        Path(root, "etc", "gone").write_text("2\n")
    store.commit("base", "base-rw")
    store.prepare("top-rw", parent="base")
    with store.mounted("top-rw") as root:
        assert Path(root, "etc", "keep").read_text() == "1\n"
        os.unlink(Path(root, "etc", "gone"))
        Path(root, "etc", "new").write_text("3\n")
    store.commit("top", "top-rw")
    changes = {(c.kind, c.path) for c in store.changes("top")}
    # "etc" shows as modified too where directory times are fine-grained
    # (not on ramfs, whose coarse clock may give the same mtime).
    assert changes - {(ChangeKind.MODIFY, "etc")} == {
        (ChangeKind.DELETE, "etc/gone"),
        (ChangeKind.ADD, "etc/new"),
    }


# -- a store root on the container's own overlay ----------------------------------------------


def test_overlay_on_the_container_root_says_why_and_what_to_do(container_root_dir: Path) -> None:
    with pytest.raises(errors.Unsupported) as info:
        layerfs.Store(container_root_dir, driver="overlay")
    msg = str(info.value)
    assert "driver 'overlay' cannot be used here" in msg
    assert f"{container_root_dir} is on overlay" in msg
    assert "loop-backed filesystem" in msg and "volume" in msg


def test_fuse_on_the_container_root_is_refused_too(container_root_dir: Path) -> None:
    # fuse stores the same overlay-format layers: whiteouts would vanish there.
    with pytest.raises(errors.Unsupported, match=r"fuse.*is on overlay.*whiteouts"):
        layerfs.Store(container_root_dir, driver="fuse")


def test_open_on_the_container_root_picks_copy(container_root_dir: Path) -> None:
    with layerfs.open(container_root_dir) as store:
        assert store.driver_name == "copy"
        st = store.status()
        assert st["driver"] == "copy"
        passed = st["driver_passed_over"]
        assert isinstance(passed, dict) and sorted(passed) == ["fuse", "overlay"]
        assert "is on overlay" in passed["overlay"] and "is on overlay" in passed["fuse"]
        env = st["environment"]
        assert isinstance(env, dict) and env["store_fs"] == "overlay"
        _round_trip(store)
    # The choice is recorded: reopening keeps it and still says why.
    with layerfs.open(container_root_dir) as store:
        assert store.driver_name == "copy"
        assert sorted(store.status()["driver_passed_over"]) == ["fuse", "overlay"]  # type: ignore[arg-type]


# -- filesystems without d_type or without xattrs -----------------------------------------------


def test_no_dtype_refuses_overlay_and_open_picks_fuse(no_dtype_fs: Path) -> None:
    root = no_dtype_fs / "store"
    with pytest.raises(errors.Unsupported, match="no d_type support"):
        layerfs.Store(root, driver="overlay")
    with layerfs.open(root) as store:
        assert store.driver_name == "fuse"
        passed = store.status()["driver_passed_over"]
        assert isinstance(passed, dict) and list(passed) == ["overlay"]
        assert "d_type" in passed["overlay"]
        _round_trip(store)


def test_no_xattrs_refuses_overlay_and_fuse(ramfs: Path) -> None:
    root = ramfs / "store"
    for driver in ("overlay", "fuse"):
        with pytest.raises(
            errors.Unsupported, match=r"ramfs filesystem .* has no trusted\.\* xattrs"
        ):
            layerfs.Store(root, driver=driver)
    with layerfs.open(root) as store:
        assert store.driver_name == "copy"
        passed = store.status()["driver_passed_over"]
        assert isinstance(passed, dict) and sorted(passed) == ["fuse", "overlay"]
        _round_trip(store)


# -- devices the runtime left out ---------------------------------------------------------------

_STORES_WITHOUT_FUSE = r"""
import json, sys
import layerfs
from layerfs import errors

real, no_dtype = sys.argv[1:]
out = {}
try:
    layerfs.Store(real + "/fuse", driver="fuse")
except errors.Unsupported as exc:
    out["fuse_error"] = str(exc)
with layerfs.open(real + "/default") as s:
    out["real"] = [s.driver_name, s.status()["environment"]["fuse_device"]]
with layerfs.open(no_dtype + "/default") as s:
    out["no_dtype"] = [s.driver_name, s.status()["driver_passed_over"]]
print(json.dumps(out))
"""


def test_without_dev_fuse(tmp_path: Path, no_dtype_fs: Path) -> None:
    out = run_without_devices(["fuse"], _STORES_WITHOUT_FUSE, str(tmp_path), str(no_dtype_fs))
    assert "no /dev/fuse, so no FUSE here" in str(out["fuse_error"])
    assert "--device /dev/fuse" in str(out["fuse_error"])
    # overlay needs no device: still the first choice on a real filesystem,
    # and status() says FUSE is missing.
    driver, fuse_device = out["real"]  # type: ignore[misc]
    assert driver == "overlay" and "no /dev/fuse" in fuse_device
    # Where overlay cannot go either, open() falls through to copy.
    driver, passed = out["no_dtype"]  # type: ignore[misc]
    assert driver == "copy"
    assert "d_type" in passed["overlay"] and "no /dev/fuse" in passed["fuse"]


def test_dev_fuse_is_back_outside_the_namespace(tmp_path: Path) -> None:
    # The same probe with the device present: the child above saw its own /dev.
    with layerfs.open(tmp_path / "store") as store:
        assert store.status()["environment"]["fuse_device"] is None  # type: ignore[index]
        assert layerfs.Store(tmp_path / "fuse", driver="fuse").driver_name == "fuse"


_BENCH_WITHOUT_LOOPS = r"""
import contextlib, io, json, sys
import layerfs
from layerfs.cli import main

scratch = sys.argv[1]
err = io.StringIO()
with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
    code = main(["bench", "--quick", "--driver", "copy", "--workload", "prepare",
                 "--scratch", scratch])
with layerfs.open(scratch + "/store") as s:
    loops = s.status()["environment"]["loop_devices"]
print(json.dumps({"code": code, "stderr": err.getvalue(), "loops": loops}))
"""


def test_bench_without_loop_devices(tmp_path: Path) -> None:
    out = run_without_devices(["loop*"], _BENCH_WITHOUT_LOOPS, str(tmp_path))
    assert out["code"] == 1, out["stderr"]
    msg = " ".join(str(out["stderr"]).split())  # rich wraps long lines
    assert "loop-backed filesystem" in msg and "no /dev/loop-control" in msg
    assert "privileged" in msg
    assert "no /dev/loop-control" in str(out["loops"])
    # Nothing of the failed run is left in the scratch directory but the store.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store"]
