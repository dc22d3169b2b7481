"""The overlay driver below the store: layout, mount options, long chains, probes."""

from __future__ import annotations

import dataclasses
import errno
import io
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from layerfs.drivers.overlay import OverlayDriver, probe

import layerfs
from layerfs import errors
from layerfs._mounting import unmount_all
from layerfs._overlayfmt.layout import OVERLAY_MAX_LOWERS
from layerfs._sys import mount as sysmount
from layerfs._types import Kind
from layerfs.driver import Capabilities, SnapshotRef, is_privileged
from layerfs.testing.suite import build_tar

pytestmark = [
    pytest.mark.skipif(not is_privileged(), reason="overlay mounts need root"),
    pytest.mark.skipif(
        # The tests' stores live under tmp_path, on the filesystem of TMPDIR.
        probe.unavailable_reason(Path(tempfile.gettempdir())) is not None,
        reason=f"overlay unavailable: {probe.unavailable_reason(Path(tempfile.gettempdir()))}",
    ),
]


class MemoryState:
    """A DriverState kept in a dict, standing in for the store's database."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}

    def get(self, name: str) -> str | None:
        return self.data.get(name)

    def put(self, name: str, value: str) -> None:
        self.data[name] = value

    def delete(self, name: str) -> None:
        self.data.pop(name, None)

    def items(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        return iter(sorted((k, v) for k, v in self.data.items() if k.startswith(prefix)))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield


class Chain:
    """Builds committed layers straight through the driver, one file each."""

    def __init__(self, driver: OverlayDriver) -> None:
        self.driver = driver
        self.next_id = 1
        self.committed: list[str] = []  # nearest last

    def ref(self, kind: Kind, snap_id: str | None = None) -> SnapshotRef:
        if snap_id is None:
            snap_id = str(self.next_id)
            self.next_id += 1
        return SnapshotRef(snap_id, f"key-{snap_id}", kind, tuple(reversed(self.committed)))

    def layer(self, files: dict[str, str] | None = None) -> str:
        active = self.ref(Kind.ACTIVE)
        self.driver.create(active)
        for name, text in (files or {f"f{active.id}": active.id}).items():
            (self.driver.layout.fs_dir(active.id) / name).write_text(text)
        self.driver.commit(SnapshotRef(active.id, active.key, Kind.COMMITTED, active.parents))
        self.committed.append(active.id)
        return active.id

    def cheap_layers(self, n: int) -> None:
        """Add ``n`` layers with one small file each."""
        for _ in range(n):
            self.layer()


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[list[Path]]:
    """Mount targets handed out by ``new_target``; all unmounted at teardown."""
    made: list[Path] = []
    yield made
    for t in made:
        unmount_all(str(t))


@pytest.fixture
def new_target(tmp_path: Path, targets: list[Path]):  # type: ignore[no-untyped-def]
    def make() -> Path:
        t = tmp_path / f"mnt{len(targets)}"
        t.mkdir()
        targets.append(t)
        return t

    return make


@pytest.fixture
def driver(tmp_path: Path) -> OverlayDriver:
    return OverlayDriver(tmp_path / "home", {}, MemoryState())


def fstype_at(target: Path) -> str:
    real = os.path.realpath(target)
    found = [m.fstype for m in sysmount.mountinfo() if m.target == real]
    return found[-1] if found else ""


# -- layout ------------------------------------------------------------------------


def test_create_makes_dirs_and_short_link(driver: OverlayDriver) -> None:
    snap = SnapshotRef("7", "k", Kind.ACTIVE)
    driver.create(snap)
    lay = driver.layout
    name = lay.link_name("7")
    assert len(name) == 8 and name.isalnum()
    assert os.readlink(lay.links / name) == "../snapshots/7/fs"
    assert (lay.links / name).resolve() == lay.fs_dir("7").resolve()
    assert lay.work_dir("7").is_dir()
    assert [p.name for p in lay.snapshots.iterdir()] == ["7"]  # no staging dir left
    with pytest.raises(errors.AlreadyExists):
        driver.create(snap)


def test_remove_is_idempotent_and_takes_half_made_storage(driver: OverlayDriver) -> None:
    lay = driver.layout
    driver.create(SnapshotRef("1", "a", Kind.ACTIVE))
    (lay.snapshots / ".create-2-abcd" / "fs").mkdir(parents=True)  # interrupted create
    os.symlink("../snapshots/2/fs", lay.links / "DANGLING")
    driver.remove("2")
    driver.remove("1")
    driver.remove("1")
    assert list(lay.snapshots.iterdir()) == []
    assert list(lay.links.iterdir()) == []
    assert list(lay.trash.iterdir()) == []


def test_usage_counts_blocks_and_hard_links_once(driver: OverlayDriver) -> None:
    snap = SnapshotRef("1", "a", Kind.ACTIVE)
    driver.create(snap)
    fs = driver.layout.fs_dir("1")
    (fs / "big").write_bytes(b"x" * 100_000)
    os.link(fs / "big", fs / "big2")
    (fs / "d").mkdir()
    u = driver.usage(snap)
    assert u.inodes == 2
    assert 100_000 <= u.size <= 100_000 + 2 * 65536


def test_check_reports_then_repairs_orphans(driver: OverlayDriver) -> None:
    lay = driver.layout
    driver.create(SnapshotRef("1", "a", Kind.ACTIVE))
    driver.create(SnapshotRef("2", "b", Kind.ACTIVE))
    (lay.snapshots / ".create-3-beef").mkdir()
    os.symlink("../snapshots/9/fs", lay.links / "NOWHERE1")
    problems = driver.check({"1"}, repair=False)
    text = "\n".join(problems)
    assert "snapshots/2 belongs to no snapshot" in text
    assert "half-made" in text
    assert "NOWHERE1" in text
    assert (lay.snapshots / "2").exists()  # report only
    driver.check({"1"}, repair=True)
    assert driver.check({"1"}, repair=False) == []
    assert [p.name for p in lay.snapshots.iterdir()] == ["1"]


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="volatile"):
        OverlayDriver(tmp_path / "h", {"volatile": "maybe"}, MemoryState())
    with pytest.raises(errors.InvalidArgument, match="colour"):
        OverlayDriver(tmp_path / "h", {"colour": "red"}, MemoryState())


def test_xattr_prefix_recorded_once(tmp_path: Path, new_target) -> None:  # type: ignore[no-untyped-def]
    state = MemoryState()
    d = OverlayDriver(tmp_path / "h", {}, state)
    assert state.get("xattr_prefix") == "trusted."
    assert d.diff_dir(SnapshotRef("1", "a", Kind.ACTIVE)).opaque_xattr == "trusted.overlay.opaque"
    # A store first opened without privileges keeps user.* xattrs even when root opens it.
    state2 = MemoryState()
    state2.put("xattr_prefix", "user.")
    d2 = OverlayDriver(tmp_path / "h2", {}, state2)
    chain = Chain(d2)
    chain.layer({"a": "1"})
    active = chain.ref(Kind.ACTIVE)
    d2.create(active)
    assert "userxattr" in d2.mounts(active)[0].options
    t = new_target()
    d2.mount(active, t)
    (t / "dir").mkdir()
    os.unlink(t / "a")
    upper = d2.layout.fs_dir(active.id)
    assert os.stat(upper / "a").st_rdev == 0 and os.path.exists(upper / "a")  # 0/0 whiteout
    assert "userxattr" in next(m for m in sysmount.mountinfo() if m.target == str(t)).super_options


# -- mounts() for mount(2) callers -----------------------------------------------------


def test_mounts_shapes(driver: OverlayDriver) -> None:
    chain = Chain(driver)
    base_active = chain.ref(Kind.ACTIVE)
    driver.create(base_active)
    assert driver.mounts(base_active)[0].type == "bind"
    assert "rw" in driver.mounts(base_active)[0].options
    driver.commit(SnapshotRef(base_active.id, "b", Kind.COMMITTED))
    chain.committed.append(base_active.id)
    second = chain.layer()

    view1 = SnapshotRef("90", "v1", Kind.VIEW, (base_active.id,))
    m = driver.mounts(view1)
    assert m[0].type == "bind" and "ro" in m[0].options
    assert m[0].source == str(driver.layout.fs_dir(base_active.id))

    active = chain.ref(Kind.ACTIVE)
    driver.create(active)
    (ov,) = driver.mounts(active)
    assert ov.type == "overlay"
    opts = dict(o.partition("=")[::2] for o in ov.options)
    lay = driver.layout
    assert (
        opts["lowerdir"]
        == f"{lay.links}/{lay.link_name(second)}:{lay.links}/{lay.link_name(base_active.id)}"
    )
    assert opts["upperdir"] == str(lay.fs_dir(active.id))
    assert opts["workdir"] == str(lay.work_dir(active.id))
    assert opts["index"] == "off" and opts["metacopy"] == "off"
    assert opts["redirect_dir"] == "nofollow"
    assert "userxattr" not in ov.options

    committed = SnapshotRef(second, "c", Kind.COMMITTED, (base_active.id,))
    (c,) = driver.mounts(committed)
    assert c.type == "overlay" and "ro" in c.options
    assert c.options[0] == (
        f"lowerdir={lay.links}/{lay.link_name(second)}:{lay.links}/{lay.link_name(base_active.id)}"
    )

    view2 = SnapshotRef("91", "v2", Kind.VIEW, (second, base_active.id))
    (v,) = driver.mounts(view2)
    assert v.type == "overlay" and "ro" in v.options
    assert not any(o.startswith(("upperdir=", "workdir=")) for o in v.options)


def test_mounts_work_with_plain_mount2(driver: OverlayDriver, new_target) -> None:  # type: ignore[no-untyped-def]
    chain = Chain(driver)
    low = chain.layer({"a": "low", "b": "low"})
    chain.layer({"a": "high"})
    active = chain.ref(Kind.ACTIVE)
    driver.create(active)
    t = new_target()
    for m in driver.mounts(active):
        m.mount(str(t))
    assert fstype_at(t) == "overlay"
    assert (t / "a").read_text() == "high" and (t / "b").read_text() == "low"
    (t / "c").write_text("new")
    assert (driver.layout.fs_dir(active.id) / "c").read_text() == "new"
    assert not (driver.layout.fs_dir(low) / "c").exists()


def test_view_of_one_layer_is_a_read_only_bind(driver: OverlayDriver, new_target) -> None:  # type: ignore[no-untyped-def]
    chain = Chain(driver)
    base = chain.layer({"a": "1"})
    view = SnapshotRef("50", "v", Kind.VIEW, (base,))
    driver.create(view)
    t = new_target()
    driver.mount(view, t)
    assert fstype_at(t) != "overlay"
    assert (t / "a").read_text() == "1"
    with pytest.raises(OSError) as exc:
        (t / "x").write_text("no")
    assert exc.value.errno == errno.EROFS
    driver.unmount(view, t)
    assert not sysmount.is_mountpoint(str(t))


def test_view_of_several_layers_is_read_only(driver: OverlayDriver, new_target) -> None:  # type: ignore[no-untyped-def]
    chain = Chain(driver)
    chain.layer({"a": "1"})
    chain.layer({"b": "2"})
    view = chain.ref(Kind.VIEW)
    driver.create(view)
    t = new_target()
    driver.mount(view, t)
    assert fstype_at(t) == "overlay"
    assert sorted(os.listdir(t)) == ["a", "b"]
    with pytest.raises(OSError) as exc:
        (t / "x").write_text("no")
    assert exc.value.errno == errno.EROFS


# -- long chains ------------------------------------------------------------------------


@pytest.mark.slow
def test_500_layer_chain_mounts_with_new_api(driver: OverlayDriver, new_target) -> None:  # type: ignore[no-untyped-def]
    if not driver.probes.lowerdir_plus:
        pytest.skip("kernel lacks overlay lowerdir+ (Linux 6.8+)")
    chain = Chain(driver)
    chain.cheap_layers(OVERLAY_MAX_LOWERS)
    active = chain.ref(Kind.ACTIVE)
    driver.create(active)
    assert len(",".join(driver.mounts(active)[0].options)) > driver.probes.page_size
    t = new_target()
    driver.mount(active, t)
    assert (t / "f1").read_text() == "1"
    assert (t / f"f{OVERLAY_MAX_LOWERS}").read_text() == str(OVERLAY_MAX_LOWERS)
    assert len(os.listdir(t)) == OVERLAY_MAX_LOWERS
    (t / "f1").write_text("changed")  # copy-up from the deepest layer
    driver.unmount(active, t)
    assert not sysmount.is_mountpoint(str(t))
    assert (driver.layout.fs_dir(active.id) / "f1").read_text() == "changed"

    # One layer more than overlayfs stacks: refused up front, nothing created.
    driver.commit(SnapshotRef(active.id, active.key, Kind.COMMITTED, active.parents))
    chain.committed.append(active.id)
    too_deep = chain.ref(Kind.ACTIVE)
    before = sorted(os.listdir(driver.layout.snapshots))
    with pytest.raises(errors.Unsupported, match="500"):
        driver.create(too_deep)
    assert sorted(os.listdir(driver.layout.snapshots)) == before
    with pytest.raises(errors.Unsupported, match="500"):
        driver.mounts(too_deep)


def test_mount2_fallback_uses_relative_paths_then_refuses(tmp_path: Path, new_target) -> None:  # type: ignore[no-untyped-def]
    state = MemoryState()
    legacy = OverlayDriver(tmp_path / "home", {"mount_api": "legacy"}, state)
    assert legacy.status()["mount_api"] == "mount(2)"
    chain = Chain(legacy)
    page = legacy.probes.page_size
    # Enough layers that absolute short links overflow a page but relative ones fit.
    per_abs = len(str(legacy.layout.links)) + 10
    n = page // per_abs + 20
    assert n * 11 < page - 200
    chain.cheap_layers(n)
    active = chain.ref(Kind.ACTIVE)
    legacy.create(active)
    cwd = os.getcwd()
    t = new_target()
    legacy.mount(active, t)
    assert os.getcwd() == cwd
    assert (t / "f1").read_text() == "1" and len(os.listdir(t)) == n
    legacy.unmount(active, t)

    chain.cheap_layers(page // 11 + 10 - n)
    too_long = chain.ref(Kind.ACTIVE)
    legacy.create(too_long)
    t2 = new_target()
    with pytest.raises(errors.Unsupported, match=r"page.*lowerdir\+"):
        legacy.mount(too_long, t2)
    assert not sysmount.is_mountpoint(str(t2))
    assert os.getcwd() == cwd


# -- probes -----------------------------------------------------------------------------------


@pytest.fixture
def loop_fs(tmp_path: Path) -> Iterator[Path]:
    """An ext4 filesystem without the filetype feature (no d_type), loop-mounted."""
    image = tmp_path / "nodtype.img"
    mnt = tmp_path / "nodtype"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(32 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-O", "^filetype", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_backing_fs_without_dtype_is_refused(loop_fs: Path) -> None:
    (loop_fs / "store").mkdir()
    (loop_fs / "store" / "metadata.db").write_text("")  # an entry to read d_type from
    home = loop_fs / "store" / "overlay"
    reason = probe.unavailable_reason(loop_fs / "store")
    assert reason is not None and "d_type" in reason
    with pytest.raises(errors.Unsupported, match="d_type"):
        OverlayDriver(home, {}, MemoryState())
    assert not home.exists()


def test_store_on_overlay_is_refused(driver: OverlayDriver, new_target) -> None:  # type: ignore[no-untyped-def]
    chain = Chain(driver)
    chain.layer({"a": "1"})
    active = chain.ref(Kind.ACTIVE)
    driver.create(active)
    t = new_target()
    driver.mount(active, t)
    assert "overlay" in (probe.unavailable_reason(t / "store") or "")
    with pytest.raises(errors.Unsupported, match="overlay"):
        OverlayDriver(t / "store" / "overlay", {}, MemoryState())
    assert not (t / "store").exists()


def test_status_reports_probes(driver: OverlayDriver) -> None:
    st = driver.status()
    p = st["probes"]
    assert isinstance(p, dict)
    for key in (
        "kernel",
        "backing_fs",
        "d_type",
        "new_mount_api",
        "lowerdir_plus",
        "redirect_dir_default",
        "metacopy_default",
        "userxattr",
        "native_diff",
    ):
        assert key in p
    assert p["d_type"] is True and p["native_diff"] is True
    assert st["xattr_prefix"] == "trusted."
    import json

    json.dumps(st)


# -- faults ------------------------------------------------------------------------------------


@pytest.fixture
def holder() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes holding a private copy of the mount namespace; killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def hold_mounts_elsewhere(procs: list[subprocess.Popen[bytes]]) -> int:
    """Start a process in a new mount namespace (a copy of ours) and return its pid."""
    p = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "600"])
    procs.append(p)
    for _ in range(200):
        try:
            if os.readlink(f"/proc/{p.pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt"):
                return p.pid
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError("unshare did not enter a new mount namespace")


def test_mount_leaked_into_another_namespace_does_not_block_remove(
    driver: OverlayDriver,
    new_target,  # type: ignore[no-untyped-def]
    holder: list[subprocess.Popen[bytes]],
) -> None:
    chain = Chain(driver)
    chain.layer({"a": "1"})
    active = chain.ref(Kind.ACTIVE)
    driver.create(active)
    inside = driver.layout.snapshot_dir(active.id) / "merged"  # a target inside the snapshot
    inside.mkdir()
    outside = new_target()
    driver.mount(active, outside)
    driver.mount(active, inside)
    (outside / "written").write_text("x")
    pid = hold_mounts_elsewhere(holder)
    driver.unmount(active, outside)
    driver.unmount(active, inside)
    leaked = [m for m in sysmount.mountinfo(str(pid)) if m.target in (str(outside), str(inside))]
    assert len(leaked) == 2  # still mounted over there

    driver.remove(active.id)

    assert not driver.layout.snapshot_dir(active.id).exists()
    assert list(driver.layout.trash.iterdir()) == []
    assert driver.check(set(chain.committed), repair=False) == []


def test_volatile_marker_is_cleared_after_a_crash(tmp_path: Path, new_target) -> None:  # type: ignore[no-untyped-def]
    d = OverlayDriver(tmp_path / "home", {"volatile": "true"}, MemoryState())
    chain = Chain(d)
    chain.layer({"a": "1"})
    active = chain.ref(Kind.ACTIVE)
    d.create(active)
    (ov,) = d.mounts(active)
    assert "volatile" in ov.options
    t = new_target()
    d.mount(active, t)
    (t / "b").write_text("2")
    marker = d.layout.work_dir(active.id) / "work" / "incompat" / "volatile"
    assert marker.is_dir()
    # The process dies: the mount goes away without the driver's unmount.
    sysmount.umount(str(t), sysmount.MNT_DETACH)
    with pytest.raises(errors.LayerfsError):  # overlayfs refuses the leftover marker
        ov.mount(str(t))
    problems = d.check(set(chain.committed) | {active.id}, repair=False)
    assert any("volatile" in p and active.id in p for p in problems)
    d.mount(active, t)  # the driver clears the marker itself
    assert (t / "b").read_text() == "2"
    d.unmount(active, t)
    assert not marker.exists()
    assert d.check(set(chain.committed) | {active.id}, repair=False) == []


def test_check_detaches_stale_mount_of_unknown_snapshot(driver: OverlayDriver, new_target) -> None:  # type: ignore[no-untyped-def]
    chain = Chain(driver)
    chain.layer({"a": "1"})
    active = chain.ref(Kind.ACTIVE)
    driver.create(active)
    t = new_target()
    driver.mount(active, t)
    known = set(chain.committed)  # the store forgot the active snapshot (crash)
    problems = driver.check(known, repair=False)
    assert any("still mounted" in p and str(t) in p for p in problems)
    driver.check(known, repair=True)
    assert not sysmount.is_mountpoint(str(t))
    assert driver.check(known, repair=False) == []


# -- capabilities ------------------------------------------------------------------------


def test_capabilities_follow_the_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without plain diffs the driver does not declare ``diff_dir``; the store then
    applies and reads layers through mounted trees, with the same result."""
    native = OverlayDriver(tmp_path / "native", {}, MemoryState())
    assert native.capabilities == Capabilities(direct_path=True, diff_dir=native.probes.native_diff)
    real = probe.probe
    monkeypatch.setattr(
        probe, "probe", lambda home: dataclasses.replace(real(home), native_diff=False)
    )
    d = OverlayDriver(tmp_path / "home", {}, MemoryState())
    assert d.capabilities == Capabilities(direct_path=True, diff_dir=False)
    with pytest.raises(errors.Unsupported):
        d.diff_dir(SnapshotRef("1", "a", Kind.ACTIVE))
    layers = [
        build_tar([("etc", None), ("etc/a", b"1\n"), ("etc/gone", b"x\n")]),
        build_tar([("etc", None), ("etc/.wh.gone", b""), ("etc/b", b"2\n")]),
    ]
    results = []
    for name, patched in (("generic", True), ("native", False)):
        if not patched:
            monkeypatch.undo()
        with layerfs.Store(tmp_path / name, driver="overlay") as store:
            assert store._driver.capabilities.diff_dir is not patched
            base = store.apply(io.BytesIO(layers[0]))
            top = store.apply(io.BytesIO(layers[1]), parent=base.name)
            changes = [(c.kind.value, c.path) for c in store.changes(top.name)]
            results.append((top.name, changes, b"".join(store.export(top.name))))
    if native.probes.native_diff:
        assert results[0] == results[1]
    assert results[0][1] == [("add", "etc/b"), ("delete", "etc/gone")]
