"""The overlay driver through the public Store API: the shared suite, native diff, crashes."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from layerfs.drivers.overlay import OverlayDriver, probe

import layerfs
from layerfs import ChangeKind, Kind, errors
from layerfs._mounting import unmount_all
from layerfs._sys import mount as sysmount
from layerfs.driver import is_privileged
from layerfs.testing.ops import Op, apply_ops, graph_layers
from layerfs.testing.suite import SnapshotSuite, _unmount_everything, build_tar
from layerfs.testing.trees import describe, diff_descriptions

pytestmark = [
    pytest.mark.skipif(not is_privileged(), reason="overlay mounts need root"),
    pytest.mark.skipif(
        # The tests' stores live under tmp_path, on the filesystem of TMPDIR.
        probe.unavailable_reason(Path(tempfile.gettempdir())) is not None,
        reason=f"overlay unavailable: {probe.unavailable_reason(Path(tempfile.gettempdir()))}",
    ),
]


class TestOverlaySnapshots(SnapshotSuite):
    driver = "overlay"


class TestOverlayLegacyMountSnapshots(SnapshotSuite):
    """The same scenarios through mount(2) with one page of options."""

    driver = "overlay"
    options = {"mount_api": "legacy"}


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[Callable[..., layerfs.Store]]:
    """Opens stores under ``tmp_path``; all unmounted and closed at teardown."""
    opened: list[layerfs.Store] = []

    def open_store(name: str, driver: str = "overlay", **options: str) -> layerfs.Store:
        s = layerfs.Store(tmp_path / name, driver=driver, options=options)
        opened.append(s)
        return s

    yield open_store
    for s in opened:
        if not s._closed:
            _unmount_everything(s)
            s.close()
    for m in reversed(list(sysmount.mountinfo())):
        if m.target.startswith(str(tmp_path) + "/"):
            unmount_all(m.target)


def build_chain(store: layerfs.Store, layers: list[list[Op]]) -> list[str]:
    """Commit ``layers`` as a chain written through mounts; return the names."""
    parent = None
    names = []
    for i, ops in enumerate(layers):
        store.prepare(f"active-{i}", parent)
        with store.mounted(f"active-{i}") as root:
            apply_ops(root, ops)
        store.commit(f"layer-{i}", f"active-{i}")
        parent = f"layer-{i}"
        names.append(parent)
    return names


def tree_of(store: layerfs.Store, name: str) -> dict[str, Any]:
    key = f"view-of-{name}"
    store.view(key, name)
    try:
        with store.mounted(key) as root:
            return describe(root, mtimes=True)
    finally:
        store.remove(key)


def overlay_home(store: layerfs.Store) -> Path:
    return store.root / "overlay"


def upper_of(store: layerfs.Store, name: str) -> Path:
    """The overlay upper dir of committed ``name`` (found through its export-free id)."""
    status = store.status()
    assert status["driver"] == "overlay"
    db = sqlite3.connect(str(store.root / "metadata.db"))
    try:
        (sid,) = db.execute("SELECT id FROM snapshots WHERE key=?", (name,)).fetchone()
    finally:
        db.close()
    return overlay_home(store) / "snapshots" / str(sid) / "fs"


# -- native diff ---------------------------------------------------------------------------


def test_apply_and_export_use_the_upper_dir_only(
    stores: Callable[..., layerfs.Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores("s")
    assert store.status()["driver_status"]["probes"]["native_diff"] is True  # type: ignore[index]

    def no_mounts(*args: object) -> None:
        raise AssertionError("native diff must not mount anything")

    monkeypatch.setattr(OverlayDriver, "mount", no_mounts)
    base = store.apply(
        io.BytesIO(build_tar([("d", None), ("d/old", b"o"), ("e", None), ("e/x", b"x")]))
    )
    top_tar = build_tar([("d", None), ("d/.wh..wh..opq", b""), ("d/new", b"n"), ("e/.wh.x", b"")])
    top = store.apply(io.BytesIO(top_tar), parent=base.name)

    upper = upper_of(store, top.name)
    whiteout = os.lstat(upper / "e" / "x")
    assert stat.S_ISCHR(whiteout.st_mode) and whiteout.st_rdev == 0
    assert os.getxattr(upper / "d", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(upper / "d")) == ["new"]

    changes = {(c.kind, c.path) for c in store.changes(top.name)}
    assert (ChangeKind.DELETE, "e/x") in changes
    assert (ChangeKind.ADD, "d/new") in changes
    assert (ChangeKind.DELETE, "d/old") in changes

    exported = b"".join(store.export(top.name))
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        names = set(tar.getnames())
    assert {"d/.wh..wh..opq", "d/new", "e/.wh.x"} <= names
    monkeypatch.undo()
    again = store.apply(io.BytesIO(exported), parent=base.name)
    assert tree_of(store, again.name) == tree_of(store, top.name)


def test_layers_are_identical_under_copy_and_overlay(stores: Callable[..., layerfs.Store]) -> None:
    source = stores("source")
    names = build_chain(source, graph_layers(10))
    tars = [b"".join(source.export(n)) for n in names]
    by_copy, by_overlay = stores("by-copy", driver="copy"), stores("by-overlay")
    parents: dict[str, str | None] = {"copy": None, "overlay": None}
    for i, data in enumerate(tars):
        c = by_copy.apply(io.BytesIO(data), parent=parents["copy"])
        o = by_overlay.apply(io.BytesIO(data), parent=parents["overlay"])
        assert c.name == o.name  # same chain ID
        got, want = tree_of(by_overlay, o.name), tree_of(by_copy, c.name)
        assert got == want, f"layer {i}: " + "\n".join(diff_descriptions(got, want)[:20])
        assert got == tree_of(source, names[i])
        parents = {"copy": c.name, "overlay": o.name}


# -- crashes -----------------------------------------------------------------------------------

_CHILD = """
import os, signal, sys
import layerfs
from layerfs.drivers.overlay import OverlayDriver

root, step = sys.argv[1], sys.argv[2]
store = layerfs.Store(root, driver="overlay")

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if step == "mount":
    real = OverlayDriver.mount
    def mount_then_die(self, snap, target):
        real(self, snap, target)
        die()
    OverlayDriver.mount = mount_then_die
    store.mount("a")
elif step == "commit":
    OverlayDriver.commit = die
    store.commit("c", "a")
"""


def run_child_until_killed(root: Path, step: str) -> None:
    p = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), step], capture_output=True, text=True
    )
    assert p.returncode == -signal.SIGKILL, p.stderr


def test_killed_between_mount_and_record_is_cleaned_on_reopen(
    stores: Callable[..., layerfs.Store],
) -> None:
    store = stores("s")
    store.apply(io.BytesIO(build_tar([("f", b"base")])))
    base = next(iter(store.walk())).name
    store.prepare("a", base)
    store.close()
    run_child_until_killed(store.root, "mount")
    left = [m for m in sysmount.mountinfo() if m.target.startswith(str(store.root / "mounts"))]
    assert [m.fstype for m in left] == ["overlay"]  # the dead process left it mounted

    reopened = stores("s")
    assert not any(m.target == left[0].target for m in sysmount.mountinfo())
    assert reopened.check() == []
    with reopened.mounted("a") as root:
        assert Path(root, "f").read_bytes() == b"base"


def test_killed_during_commit_is_finished_on_reopen(stores: Callable[..., layerfs.Store]) -> None:
    store = stores("s")
    store.apply(io.BytesIO(build_tar([("f", b"base")])))
    base = next(iter(store.walk())).name
    store.prepare("a", base)
    with store.mounted("a") as root:
        Path(root, "g").write_bytes(b"mine")
    store.close()
    run_child_until_killed(store.root, "commit")

    reopened = stores("s")
    assert reopened.check() == []
    assert reopened.stat("c").kind is Kind.COMMITTED
    assert {c.path for c in reopened.changes("c")} == {"g"}


def test_check_reports_storage_the_store_does_not_know(
    stores: Callable[..., layerfs.Store],
) -> None:
    store = stores("s")
    store.prepare("a")
    home = overlay_home(store)
    (home / "snapshots" / "999" / "fs").mkdir(parents=True)  # a crash left storage behind
    os.symlink("../snapshots/998/fs", home / "l" / "ZZZZZZZZ")
    problems = store.check()
    assert any("999" in p for p in problems) and any("ZZZZZZZZ" in p for p in problems)
    assert (home / "snapshots" / "999").exists()
    store.check(repair=True)
    assert store.check() == []
    assert not (home / "snapshots" / "999").exists()


# -- rootless ----------------------------------------------------------------------------------

_ROOTLESS = """
import io, json, os, sys
import layerfs
from layerfs.testing.suite import build_tar

s = layerfs.Store(sys.argv[1], driver="overlay")
base = s.apply(io.BytesIO(build_tar([("d", None), ("d/a", b"a"), ("e", None), ("e/x", b"x")])))
top = s.apply(
    io.BytesIO(build_tar([("d", None), ("d/.wh..wh..opq", b""), ("d/n", b"n"), ("e/.wh.x", b"")])),
    parent=base.name,
)
s.prepare("w", top.name)
with s.mounted("w") as r:
    seen = {"d": sorted(os.listdir(r + "/d")), "e": sorted(os.listdir(r + "/e"))}
    open(r + "/d/n2", "w").write("z")
s.commit("c", "w")
print(json.dumps({
    "status": s.status()["driver_status"],
    "options": list(s.mounts("c")[0].options) if s.mounts("c")[0].type == "overlay" else [],
    "seen": seen,
    "changes": sorted(c.path for c in s.changes("c")),
    "check": s.check(),
}))
s.close()
"""


def test_rootless_store_uses_user_xattrs(tmp_path: Path) -> None:
    """In a user namespace (not privileged) the driver mounts with userxattr (Linux 5.11+)."""
    if probe.kernel_version() < (5, 11):
        pytest.skip("unprivileged overlay needs Linux 5.11+")
    p = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            sys.executable,
            "-c",
            _ROOTLESS,
            str(tmp_path / "store"),
        ],
        capture_output=True,
        text=True,
    )
    if p.returncode != 0 and "unshare failed" in p.stderr:
        pytest.skip(f"user namespaces unavailable: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"]["xattr_prefix"] == "user."
    assert out["status"]["probes"]["userxattr"] is True
    assert out["seen"] == {"d": ["n"], "e": []}
    assert out["changes"] == ["d", "d/n2"]  # d: its mtime changed
    assert out["check"] == []
    upper = tmp_path / "store" / "overlay" / "snapshots" / "2" / "fs"
    assert os.getxattr(upper / "d", "user.overlay.opaque") == b"y"


# -- long chains -------------------------------------------------------------------------------


@pytest.mark.slow
def test_500_layer_chain_through_the_store(stores: Callable[..., layerfs.Store]) -> None:
    store = stores("s")
    if not store.status()["driver_status"]["probes"]["lowerdir_plus"]:  # type: ignore[index]
        pytest.skip("kernel lacks overlay lowerdir+ (Linux 6.8+)")
    parent = None
    for i in range(500):
        parent = store.apply(io.BytesIO(build_tar([(f"f{i}", str(i).encode())])), parent).name
    store.prepare("top", parent)
    with store.mounted("top") as root:
        assert Path(root, "f0").read_bytes() == b"0"
        assert len(os.listdir(root)) == 500
        Path(root, "f0").write_bytes(b"copied up from layer 500")
    store.commit("deepest", "top")
    before = list(store.walk())
    with pytest.raises(errors.Unsupported, match="500"):
        store.prepare("too-deep", "deepest")
    assert list(store.walk()) == before
    assert store.check() == []
