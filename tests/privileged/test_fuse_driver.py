"""The fuse driver and its servers: lifecycle, mount helper, passthrough, crashes, interchange."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from layerfs.drivers.fuse import FuseDriver, launch
from layerfs.drivers.fuse.testing import (
    build_sample_layers,
    fuse_mounted,
    overlay_mounted,
    tree,
)

from layerfs import errors
from layerfs._types import Kind
from layerfs.driver import SnapshotRef

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


class _State:
    """A DriverState kept in a dict."""

    def __init__(self) -> None:
        self.d: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.d.get(name)

    def put(self, name: str, value: str) -> None:
        self.d[name] = value

    def delete(self, name: str) -> None:
        self.d.pop(name, None)

    def items(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        return iter(sorted((k, v) for k, v in self.d.items() if k.startswith(prefix)))

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        yield


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[FuseDriver]:
    home = tmp_path / "home"
    home.mkdir()
    d = FuseDriver(home, {}, _State())
    yield d
    for rec in d._records():
        d._stop(rec)


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="passthrough"):
        FuseDriver(tmp_path, {"passthrough": "yes"}, _State())
    with pytest.raises(errors.InvalidArgument, match="threads"):
        FuseDriver(tmp_path, {"threads": "0"}, _State())
    with pytest.raises(errors.InvalidArgument, match="bogus"):
        FuseDriver(tmp_path, {"bogus": "1"}, _State())


def test_driver_snapshot_cycle(driver: FuseDriver, tmp_path: Path) -> None:
    base = SnapshotRef("1", "base", Kind.ACTIVE)
    driver.create(base)
    target = tmp_path / "t1"
    target.mkdir()
    driver.mount(base, target)
    try:
        (target / "etc").mkdir()
        (target / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    finally:
        driver.unmount(base, target)
    assert not os.path.ismount(target)
    assert driver._records() == []
    committed = SnapshotRef("1", "base", Kind.COMMITTED)
    driver.commit(committed)
    child = SnapshotRef("2", "child", Kind.ACTIVE, ("1",))
    driver.create(child)
    (m,) = driver.mounts(child)
    assert m.type == "fuse.layerfs"
    assert any(o.startswith("lowerdir=") for o in m.options)
    assert any(o.startswith("upperdir=") for o in m.options)
    driver.mount(child, target)
    try:
        assert (target / "etc" / "hosts").read_text() == "127.0.0.1 localhost\n"
        os.unlink(target / "etc" / "hosts")
    finally:
        driver.unmount(child, target)
    assert driver.capabilities.diff_dir and not driver.capabilities.direct_path
    diff = driver.diff_dir(child)
    wh = os.lstat(diff.path / "etc" / "hosts")
    assert wh.st_rdev == 0 and (wh.st_mode & 0o170000) == 0o020000
    view = SnapshotRef("3", "view", Kind.VIEW, ("1",))
    driver.create(view)
    assert "ro" in driver.mounts(view)[0].options
    driver.mount(view, target)
    try:
        with pytest.raises(OSError) as exc:
            (target / "x").write_text("x")
        assert exc.value.errno == errno.EROFS
    finally:
        driver.unmount(view, target)
    status = driver.status()
    assert status["data_mode"] in ("passthrough", "writeback-cache")
    assert "offered" in status["init"]  # type: ignore[operator]
    for i in ("3", "2", "1"):
        driver.remove(i)
    assert driver.layout.ids() == []


def _mount_helper(opts: str, target: Path) -> None:
    """Mount the way mount(8) runs a helper: ``mount.fuse.layerfs none TARGET -o OPTS``."""
    if shutil.which("mount.fuse.layerfs") is None:
        pytest.skip("mount.fuse.layerfs is not installed (pip install -e .)")
    subprocess.run(["mount.fuse.layerfs", "none", str(target), "-o", opts], check=True)


def test_mount_helper(tmp_path: Path) -> None:
    layers = build_sample_layers(tmp_path / "layers")
    target = tmp_path / "m"
    target.mkdir()
    opts = f"lowerdir={layers['l1']}:{layers['l2']},upperdir={layers['upper']},workdir={layers['work']}"
    _mount_helper(opts + ",rw,noatime", target)
    try:
        assert (target / "top").read_text() == "top-l1\n"
        (target / "via-helper").write_text("ok")
    finally:
        launch.stop(str(target))
    assert (layers["upper"] / "via-helper").read_text() == "ok"
    # read-only without upperdir
    opts = f"lowerdir={layers['l1']}:{layers['l2']}"
    _mount_helper(opts, target)
    try:
        with pytest.raises(OSError) as exc:
            (target / "x").write_text("x")
        assert exc.value.errno == errno.EROFS
    finally:
        launch.stop(str(target))


def _requests(stats_file: Path) -> dict[str, int]:
    for _ in range(200):
        if stats_file.exists() and stats_file.stat().st_size:
            return json.loads(stats_file.read_text())["requests"]  # type: ignore[no-any-return]
        time.sleep(0.05)
    raise AssertionError("server wrote no statistics")


@pytest.mark.parametrize("mode", ["auto", "off"])
def test_passthrough_keeps_data_out_of_the_server(mode: str, tmp_path: Path) -> None:
    from layerfs.drivers.fuse.driver import probe_init

    if mode == "auto" and probe_init().get("data_mode") != "passthrough":
        pytest.skip("kernel offers no FUSE passthrough")
    layers = build_sample_layers(tmp_path / "layers")
    (layers["l2"] / "big").write_bytes(os.urandom(1 << 20) * 32)
    stats = tmp_path / "stats.json"
    target = tmp_path / "m"
    with fuse_mounted(layers, target, passthrough=mode, stats_file=str(stats)):
        data = (target / "big").read_bytes()
        assert len(data) == 32 << 20
        with open(target / "big", "r+b") as f:  # copy-up, then writes
            f.seek(1 << 20)
            f.write(b"w" * (1 << 20))
    counts = _requests(stats)
    if mode == "auto":
        assert counts.get("READ", 0) == 0
        assert counts.get("WRITE", 0) == 0
    else:
        assert counts.get("READ", 0) > 0
        assert counts.get("WRITE", 0) > 0
    assert (layers["upper"] / "big").read_bytes()[1 << 20 : 2 << 20] == b"w" * (1 << 20)


def test_kill_9_leaves_enotconn_and_a_consistent_upper(tmp_path: Path) -> None:
    layers = build_sample_layers(tmp_path / "layers")
    (layers["l2"] / "big").write_bytes(b"b" * (8 << 20))
    target = tmp_path / "m"
    target.mkdir()
    from layerfs.drivers.fuse.fs import Config

    cfg = Config(
        lowers=[str(layers["l1"]), str(layers["l2"])],
        upper=str(layers["upper"]),
        work=str(layers["work"]),
    )
    info = launch.start(cfg, str(target))
    try:
        f = open(target / "top", "a")  # noqa: SIM115 - held open across the kill
        f.write("x")
        f.flush()
        (target / "made").write_text("m")
        os.kill(info.pid, signal.SIGKILL)
        for _ in range(100):
            if not os.path.exists(f"/proc/{info.pid}"):
                break
            time.sleep(0.05)
        with pytest.raises(OSError) as exc:
            os.stat(target / "top")
        assert exc.value.errno == errno.ENOTCONN
        with contextlib.suppress(OSError):
            f.close()
        assert launch.probe(str(target)) == "dead"
        assert launch.cleanup(str(target)) is True
        assert launch.probe(str(target)) == "absent"
    finally:
        launch.stop(str(target))
    assert (layers["upper"] / "made").read_text() == "m"
    assert (layers["upper"] / "top").read_text() == "top-l1\nx"
    # a leftover temporary in the workdir (a copy-up cut short) is swept on the next mount
    (layers["work"] / "work" / "#dead.1").write_bytes(b"partial")
    with fuse_mounted(layers, target):
        assert os.listdir(layers["work"] / "work") == []
        assert (target / "big").stat().st_size == 8 << 20


def test_layers_interchange_with_kernel_overlay(tmp_path: Path) -> None:
    layers = build_sample_layers(tmp_path / "layers")
    target = tmp_path / "m"
    with fuse_mounted(layers, target):
        os.unlink(target / "a" / "f1")
        (target / "keep" / "k").unlink()
        os.rmdir(target / "keep")
        os.mkdir(target / "keep")
        (target / "keep" / "fresh").write_text("f")
        os.chmod(target / "top", 0o600)
        os.setxattr(target / "xa", "user.more", b"1")
        fuse_view = tree(target)
    with overlay_mounted(layers, target):
        assert tree(target) == fuse_view
        # and the other way: kernel overlay writes, fuse reads
        os.unlink(target / "a" / "f3")
        os.mkdir(target / "b" / "nd")
        (target / "b" / "nd" / "z").write_text("z")
        (target / "opq" / "new").unlink()
        os.rmdir(target / "opq")
        os.mkdir(target / "opq")
        overlay_view = tree(target)
    with fuse_mounted(layers, target):
        assert tree(target) == overlay_view
