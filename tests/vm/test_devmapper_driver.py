"""devmapper beyond the shared suite: pool faults, sharing, udev modes, busy devices."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from dmpool import ScratchPool
from dmstore import SMALL, opened, read, write
from layerfs.drivers.devmapper import dmsetup
from layerfs.drivers.devmapper.status import parse_pool

import layerfs
from layerfs import errors


def our_devices(store: layerfs.Store) -> list[str]:
    prefix = str(store.status()["driver_status"]["device_prefix"])  # type: ignore[index]
    return sorted(n for n in dmsetup.ls() if n.startswith(prefix + "-") and not n.endswith("-pool"))


def test_snapshot_isolation_from_origin_written_after(tmp_path: Path) -> None:
    with opened(tmp_path / "s", **SMALL) as store:
        store.prepare("a")
        write(store, "a", "f", b"old")
        store.commit("base", "a")
        store.view("v", "base")
        store.prepare("b", "base")
        write(store, "b", "f", b"new")
        assert read(store, "v", "f") == b"old"
        assert read(store, "b", "f") == b"new"
        store.commit("top", "b")
        store.prepare("c", "top")
        assert read(store, "c", "f") == b"new"


def test_active_origin_is_suspended_around_create_snap(tmp_path: Path) -> None:
    # The pool level: snapshot an active, mounted origin, then keep writing it.
    with opened(tmp_path / "s", **SMALL) as store:
        store.prepare("a")
        driver = store._driver  # noqa: SLF001 - the pool level is the point here
        path = store.mount("a")
        with open(os.path.join(path, "f"), "wb") as f:
            f.write(b"before")
            f.flush()
            os.fsync(f.fileno())
        rec = driver.journal.device(str(store._get("a").sid))  # noqa: SLF001
        assert rec is not None
        name = driver._dev_name(str(store._get("a").sid))  # noqa: SLF001
        thin = rec.thin + 1000
        driver.pool.create_snap(thin, rec.thin, name)
        try:
            info = dmsetup.info(name)
            assert info is not None and not info.suspended
            with open(os.path.join(path, "f"), "wb") as f:
                f.write(b"after")
                os.fsync(f.fileno())
            snap_name = name + "-copy"
            dmsetup.create(snap_name, driver.pool.thin_table(thin, rec.size))
            dmsetup.mknodes(snap_name)
            target = tmp_path / "copy"
            target.mkdir()
            try:
                subprocess.run(
                    ["mount", "-o", "ro", f"/dev/mapper/{snap_name}", str(target)], check=True
                )
                assert (target / "f").read_bytes() == b"before"
            finally:
                subprocess.run(["umount", str(target)])
                dmsetup.remove(snap_name)
        finally:
            driver.pool.delete(thin)
            store.unmount("a")


def test_usage_counts_own_blocks_only(tmp_path: Path) -> None:
    with opened(tmp_path / "s", **SMALL) as store:
        store.prepare("a")
        write(store, "a", "big", os.urandom(2 << 20))
        store.commit("base", "a")
        assert store.usage("base").size >= 2 << 20
        store.prepare("b", "base")
        assert store.usage("b").size < 1 << 20
        write(store, "b", "more", os.urandom(1 << 20))
        assert store.usage("b").size >= 1 << 20
        status = store.status()["driver_status"]
        assert status["data_used_bytes"] >= 3 << 20  # type: ignore[operator]


def test_status_reports_the_pool(tmp_path: Path) -> None:
    with opened(tmp_path / "s", **SMALL) as store:
        status = store.status()["driver_status"]
        assert isinstance(status, dict)
        assert status["loopback"] is True
        pool = status["pool_status"]
        assert pool["mode"] == "rw" and pool["error_if_no_space"] is True
        assert status["data_total_bytes"] == 512 << 20


def test_pool_full_gives_enospc_and_store_stays_consistent(tmp_path: Path) -> None:
    opts = {"data_size": "48M", "base_size": "128M", "min_free_percent": "0"}
    with opened(tmp_path / "s", **opts) as store:
        store.prepare("a")
        path = store.mount("a")
        failed = None
        try:
            with open(os.path.join(path, "fill"), "wb") as f:
                for _ in range(100):
                    f.write(os.urandom(1 << 20))
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as exc:
            failed = exc.errno
        finally:
            store.unmount("a")
        assert failed in (errno.ENOSPC, errno.EIO), failed
        st = store.status()["driver_status"]["pool_status"]  # type: ignore[index]
        assert st["mode"] == "out_of_data_space"
        with pytest.raises(errors.NoSpace, match="out of data space"):
            store.prepare("b")
        assert [i.name for i in store.walk()] == ["a"]
        assert store.check() == []
        store.remove("a")
        st = store.status()["driver_status"]["pool_status"]  # type: ignore[index]
        assert st["mode"] == "rw"
        store.prepare("b")
        assert store.check() == []


def test_free_space_floor(tmp_path: Path) -> None:
    opts = {"data_size": "64M", "base_size": "128M", "min_free_percent": "50"}
    with opened(tmp_path / "s", **opts) as store:
        store.prepare("a")
        write(store, "a", "half", os.urandom(40 << 20))
        with pytest.raises(errors.NoSpace, match="min_free_percent"):
            store.prepare("b")
        assert store.check() == []


def _reload_pool(name: str, extra: str | None) -> None:
    fields = dmsetup.table(name).split()
    head, nfeat = fields[:7], int(fields[7])
    features = [f for f in fields[8 : 8 + nfeat] if f != "read_only"]
    if extra:
        features.append(extra)
    table = " ".join([*head, str(len(features)), *features])
    dmsetup.suspend(name)
    try:
        subprocess.run(
            ["dmsetup", "reload", name, "--table", table], check=True, capture_output=True
        )
    finally:
        dmsetup.resume(name)


def test_read_only_pool_refuses_new_devices(tmp_path: Path, scratch_pool: ScratchPool) -> None:
    with opened(tmp_path / "s", pool_name=scratch_pool.name, base_size="64M") as store:
        store.prepare("a")
        store.commit("c", "a")
        for dev in our_devices(store):
            dmsetup.remove(dev)
        _reload_pool(scratch_pool.name, "read_only")
        try:
            assert parse_pool(dmsetup.status(scratch_pool.name), scratch_pool.name).mode == "ro"
            with pytest.raises(errors.FailedPrecondition, match="is ro"):
                store.prepare("b", "c")
            assert [i.name for i in store.walk()] == ["c"]
        finally:
            _reload_pool(scratch_pool.name, None)
        store.prepare("b", "c")
        assert store.check() == []


def test_two_stores_share_one_pool(tmp_path: Path, scratch_pool: ScratchPool) -> None:
    opts = {"pool_name": scratch_pool.name, "base_size": "64M"}
    with opened(tmp_path / "one", **opts) as one, opened(tmp_path / "two", **opts) as two:
        for store, data in ((one, b"one"), (two, b"two")):
            store.prepare("a")
            write(store, "a", "f", data)
            store.commit("c", "a")
            store.prepare("b", "c")
        s1, s2 = one.status()["driver_status"], two.status()["driver_status"]
        assert s1["device_prefix"] != s2["device_prefix"]  # type: ignore[index]
        assert s1["thin_id_range"] != s2["thin_id_range"]  # type: ignore[index]
        assert read(one, "b", "f") == b"one"
        assert read(two, "b", "f") == b"two"
        one.remove("b")
        one.remove("c")
        assert read(two, "b", "f") == b"two"
        assert one.check() == [] and two.check() == []
    assert set(dmsetup.ls()) >= {scratch_pool.name}


def test_swapped_pool_is_refused(tmp_path: Path, scratch_pool: ScratchPool) -> None:
    with opened(tmp_path / "s", pool_name=scratch_pool.name, base_size="64M") as store:
        store.prepare("a")
    other = ScratchPool(tmp_path / "other", scratch_pool.name + "x", 64 << 20)
    try:
        with pytest.raises(
            errors.FailedPrecondition, match="not the pool this store was made with"
        ):
            layerfs.Store(tmp_path / "s", driver="devmapper", options={"pool_name": other.name})
    finally:
        other.close()
    with opened(tmp_path / "s", pool_name=scratch_pool.name, base_size="64M") as store:
        assert [i.name for i in store.walk()] == ["a"]


def test_missing_pool_and_bad_options(tmp_path: Path) -> None:
    with pytest.raises(errors.NotFound, match="pool_name"):
        layerfs.Store(tmp_path / "a", driver="devmapper", options={"pool_name": "no-such-pool"})
    with pytest.raises(errors.InvalidArgument, match="fs"):
        layerfs.Store(tmp_path / "b", driver="devmapper", options={"fs": "btrfs"})
    with pytest.raises(errors.InvalidArgument, match="colour"):
        layerfs.Store(tmp_path / "c", driver="devmapper", options={"colour": "red"})
    with pytest.raises(errors.InvalidArgument, match="block_size"):
        layerfs.Store(tmp_path / "d", driver="devmapper", options={"block_size": "48K"})


def test_device_that_is_not_a_thin_pool_is_refused(tmp_path: Path) -> None:
    name = f"lfstest-zero-{os.getpid()}"
    dmsetup.create(name, "0 2048 zero")
    try:
        with pytest.raises(errors.InvalidArgument, match="thin-pool"):
            layerfs.Store(tmp_path / "s", driver="devmapper", options={"pool_name": name})
    finally:
        dmsetup.remove(name, deferred=False)


def test_missing_dmsetup_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(errors.Unsupported, match="dmsetup is not installed"):
        layerfs.Store(tmp_path / "s", driver="devmapper", options=SMALL)


@pytest.mark.parametrize("mode", ["on", "off"])
def test_udev_modes(tmp_path: Path, mode: str) -> None:
    if mode == "on" and not os.path.exists("/run/udev/control"):
        pytest.skip("udevd is not running here")
    with opened(tmp_path / "s", **{**SMALL, "udev": mode}) as store:
        assert store.status()["driver_status"]["udev"] is (mode == "on")  # type: ignore[index]
        store.prepare("a")
        write(store, "a", "f", b"x")
        store.commit("c", "a")
        store.view("v", "c")
        assert read(store, "v", "f") == b"x"
        for name in our_devices(store):
            assert os.path.exists(f"/dev/mapper/{name}")
        store.remove("v")
        assert store.check() == []


def test_busy_device_is_reported_and_retried(tmp_path: Path) -> None:
    target = tmp_path / "outside"
    target.mkdir()
    with opened(tmp_path / "s", **SMALL) as store:
        store.prepare("a")
        store.prepare("b")
        store.mounts("a")[0].mount(str(target))  # held outside the store's bookkeeping
        try:
            with pytest.raises(errors.Busy, match="unmount"):
                store.commit("c", "a")
        finally:
            subprocess.run(["umount", str(target)], check=True)
        store.mounts("b")[0].mount(str(target))
        try:
            with pytest.raises(errors.Busy, match="deferred"):
                store.remove("b")
        finally:
            subprocess.run(["umount", str(target)], check=True)
        # Both stay as they were, to be retried once the outside mount is gone;
        # the deferred removal took b's device down when it was unmounted.
        assert {i.name for i in store.walk()} == {"a", "b"}
        assert store.check() == []
        store.commit("c", "a")
        store.remove("b")
    with opened(tmp_path / "s", **SMALL) as store:
        assert {i.name for i in store.walk()} == {"c"}
        assert our_devices(store) == []
        assert store.check() == []


def test_xfs_snapshots(tmp_path: Path) -> None:
    with opened(
        tmp_path / "s", fs="xfs", data_size="1G", base_size="320M", min_free_percent="0"
    ) as store:
        store.prepare("a")
        write(store, "a", "f", b"v1")
        store.commit("c", "a")
        store.prepare("b", "c")
        assert store.mounts("b")[0].options == ("rw", "nouuid")
        write(store, "b", "f", b"v2")
        store.view("v", "c")
        assert read(store, "v", "f") == b"v1"
        assert read(store, "b", "f") == b"v2"
        assert store.check() == []
