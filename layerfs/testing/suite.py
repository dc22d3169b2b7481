"""The shared snapshot conformance suite: any driver, through the public API.

Bind it to a driver in one class::

    from layerfs.testing.suite import SnapshotSuite

    class TestMyDriver(SnapshotSuite):
        driver = "mydriver"
        options = {"some": "option"}

The scenarios follow containerd's snapshotter test suite and moby's
graphtest: the snapshot lifecycle and its errors, labels, walk filters,
mount refcounts, layer chains that rewrite, delete, chown, rename,
hard-link and re-create files (each committed layer compared with a plain
directory built by the same steps), export/apply round trips, and bad
layer tars that must leave the store untouched.

Override the ``store_root`` fixture to place stores elsewhere (a loop
filesystem, a VM's scratch disk).
"""

from __future__ import annotations

import errno
import gzip
import io
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import layerfs
from layerfs import ChangeKind, Kind, errors
from layerfs.testing.ops import Op, apply_ops, graph_layers
from layerfs.testing.trees import describe, diff_descriptions


def build_tar(entries: list[tuple[str, Any]]) -> bytes:
    """A layer tar from ``(name, content)`` pairs: bytes = file, None = dir,
    ``("symlink", target)``, ``("hardlink", target)``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, tuple) and content[0] == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content[1]
                tar.addfile(info)
            elif isinstance(content, tuple) and content[0] == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, content[1]
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


class SnapshotSuite:
    """Conformance scenarios; subclasses set ``driver`` (and maybe ``options``)."""

    driver: ClassVar[str] = ""
    options: ClassVar[dict[str, str]] = {}
    #: Whether views refuse writes (False for drivers that hand out plain dirs).
    views_are_readonly: ClassVar[bool] = True
    #: How many layers the long chain scenario builds.
    chain_length: ClassVar[int] = 128
    #: The long chain compares every n-th layer (and the last) with the
    #: reference; each comparison mounts a view, which is costly for block drivers.
    chain_check_every: ClassVar[int] = 1

    # -- fixtures -------------------------------------------------------------

    @pytest.fixture
    def store_root(self, tmp_path: Path) -> Path:
        """Where the store lives; override to use another filesystem."""
        return tmp_path / "store"

    @pytest.fixture
    def store(self, store_root: Path) -> Iterator[layerfs.Store]:
        """A fresh store for the driver; every mount is gone afterwards."""
        s = layerfs.Store(store_root, driver=self.driver, options=dict(self.options))
        try:
            yield s
        finally:
            _unmount_everything(s)
            problems = s.check()
            s.close()
            assert not problems, problems

    # -- helpers ----------------------------------------------------------------

    def write_layer(self, store: layerfs.Store, key: str, ops: list[Op]) -> None:
        """Run ``ops`` inside the mounted snapshot ``key``."""
        with store.mounted(key) as root:
            apply_ops(root, ops)

    def tree_of(self, store: layerfs.Store, name: str, *, mtimes: bool = False) -> dict[str, Any]:
        """Describe the tree of committed ``name`` through a temporary view."""
        key = f"view-of-{name}"
        store.view(key, name)
        try:
            with store.mounted(key) as root:
                return describe(root, mtimes=mtimes)
        finally:
            store.remove(key)

    # -- lifecycle ----------------------------------------------------------------

    def test_prepare_commit_stat(self, store: layerfs.Store) -> None:
        mounts = store.prepare("a", labels={"x": "1"})
        assert mounts and all(isinstance(m, layerfs.Mount) for m in mounts)
        info = store.stat("a")
        assert (info.name, info.parent, info.kind, dict(info.labels)) == (
            "a",
            None,
            Kind.ACTIVE,
            {"x": "1"},
        )
        committed = store.commit("base", "a")
        assert committed.kind is Kind.COMMITTED and committed.name == "base"
        with pytest.raises(errors.NotFound):
            store.stat("a")
        store.prepare("child", "base")
        assert store.stat("child").parent == "base"
        store.view("look", "base")
        assert store.stat("look").kind is Kind.VIEW

    def test_same_key_twice_fails(self, store: layerfs.Store) -> None:
        store.prepare("k")
        with pytest.raises(errors.AlreadyExists):
            store.prepare("k")
        with pytest.raises(errors.AlreadyExists):
            store.view("k")
        store.commit("c", "k")
        with pytest.raises(errors.AlreadyExists):
            store.prepare("c")

    def test_parent_rules(self, store: layerfs.Store) -> None:
        with pytest.raises(errors.NotFound):
            store.prepare("x", "missing")
        store.prepare("active")
        with pytest.raises(errors.FailedPrecondition):
            store.prepare("x", "active")
        store.view("v")
        with pytest.raises(errors.FailedPrecondition):
            store.commit("c", "v")
        with pytest.raises(errors.NotFound):
            store.commit("c", "nothing")
        assert [i.name for i in store.walk()] == ["active", "v"]

    def test_remove_refuses_parents_and_reuses_keys(self, store: layerfs.Store) -> None:
        store.prepare("a")
        store.commit("base", "a")
        store.prepare("b", "base")
        with pytest.raises(errors.FailedPrecondition):
            store.remove("base")
        store.remove("b")
        store.remove("base")
        with pytest.raises(errors.NotFound):
            store.remove("base")
        store.prepare("base")
        store.commit("a", "base")
        assert {i.name for i in store.walk()} == {"a"}

    def test_bad_keys(self, store: layerfs.Store) -> None:
        for key in ["", "/", "a\x00b", "x" * 256, "line\nbreak"]:
            with pytest.raises(errors.InvalidArgument):
                store.prepare(key)
        assert list(store.walk()) == []

    def test_labels_update(self, store: layerfs.Store) -> None:
        store.prepare("a", labels={"keep": "1", "drop": "2"})
        info = store.stat("a")
        new = info.with_labels({"keep": "1", "add": "3"})
        updated = store.update(new, "labels.add", "labels.drop")
        assert dict(updated.labels) == {"keep": "1", "add": "3"}
        replaced = store.update(info.with_labels({"only": "x"}))
        assert dict(replaced.labels) == {"only": "x"}
        assert replaced.updated is not None and info.updated is not None
        assert replaced.updated >= info.updated
        with pytest.raises(errors.InvalidArgument):
            store.update(info, "name")
        with pytest.raises(errors.NotFound):
            store.update(layerfs.Info("nope", None, Kind.ACTIVE))

    def test_walk_filters(self, store: layerfs.Store) -> None:
        store.prepare("a", labels={"env": "prod", "a.b": "dotted"})
        store.commit("base", "a", labels={"env": "prod", "a.b": "dotted"})
        store.prepare("b", "base", labels={"env": "dev"})
        store.view("v", "base")

        def names(*f: str) -> list[str]:
            return [i.name for i in store.walk(*f)]

        assert names() == ["b", "base", "v"]
        assert names("kind==active") == ["b"]
        assert names("kind==committed") == ["base"]
        assert names("parent==base") == ["b", "v"]
        assert names("labels.env") == ["b", "base"]
        assert names("labels.env==prod") == ["base"]
        assert names('labels."a.b"==dotted') == ["base"]
        assert names("kind==active", "kind==view") == ["b", "v"]
        assert names("parent==base,kind==view") == ["v"]
        assert names("labels.env!=prod") == ["b", "v"]
        assert names("name~=^b") == ["b", "base"]
        for bad in ["kind=", "nofield==x", "labels.x==", 'labels."x==y']:
            with pytest.raises(errors.InvalidArgument):
                list(store.walk(bad))

    # -- mounting -----------------------------------------------------------------

    def test_mount_refcount(self, store: layerfs.Store) -> None:
        store.prepare("a")
        p1 = store.mount("a")
        p2 = store.mount("a")
        assert p1 == p2
        with open(os.path.join(p1, "f"), "w") as f:
            f.write("data")
        store.unmount("a")
        assert os.path.exists(os.path.join(p1, "f"))  # still mounted once
        with pytest.raises(errors.Busy):
            store.remove("a")
        store.unmount("a")
        with pytest.raises(errors.NotFound):
            store.unmount("a")
        store.commit("c", "a")
        assert "f" in self.tree_of(store, "c")

    def test_mount_at_target(self, store: layerfs.Store, tmp_path: Path) -> None:
        store.prepare("a")
        target = tmp_path / "target"
        target.mkdir()
        path = store.mount("a", target)
        try:
            (Path(path) / "x").write_text("x")
        finally:
            store.unmount("a", target)
        store.commit("c", "a")
        assert "x" in self.tree_of(store, "c")

    def test_view_is_readonly(self, store: layerfs.Store) -> None:
        store.prepare("a")
        self.write_layer(store, "a", [("write", "f", b"1")])
        store.commit("c", "a")
        mounts = store.view("v", "c")
        if not self.views_are_readonly:
            # Plain directories cannot refuse writes; the mounts still say ro.
            assert all("ro" in m.options for m in mounts)
            return
        with store.mounted("v") as root:
            with pytest.raises(OSError) as exc:
                Path(root, "g").write_text("no")
            assert exc.value.errno == errno.EROFS
            with pytest.raises(OSError) as exc:
                Path(root, "f").write_text("no")
            assert exc.value.errno == errno.EROFS

    def test_isolation_between_snapshots(self, store: layerfs.Store) -> None:
        store.prepare("a")
        self.write_layer(store, "a", [("write", "shared", b"base")])
        store.commit("base", "a")
        store.prepare("x", "base")
        store.prepare("y", "base")
        self.write_layer(
            store, "x", [("write", "shared", b"changed by x"), ("write", "only-x", b"x")]
        )
        with store.mounted("y") as root:
            assert Path(root, "shared").read_bytes() == b"base"
            assert not Path(root, "only-x").exists()
        assert self.tree_of(store, "base")["shared"] == describe_bytes(b"base")

    # -- layer chains ---------------------------------------------------------------

    def _check_chain(
        self, store: layerfs.Store, tmp_path: Path, layers: list[list[Op]], every: int = 1
    ) -> list[str]:
        reference = tmp_path / "reference"
        reference.mkdir()
        parent = None
        names = []
        for i, ops in enumerate(layers):
            key = f"active-{i}"
            store.prepare(key, parent)
            self.write_layer(store, key, ops)
            apply_ops(str(reference), ops)
            name = f"layer-{i}"
            store.commit(name, key)
            if (i + 1) % every == 0 or i + 1 == len(layers):
                got = self.tree_of(store, name)
                want = describe(reference)
                assert got == want, f"layer {i}: " + "\n".join(diff_descriptions(got, want)[:20])
            parent = name
            names.append(name)
        return names

    def test_graph_chain_short(self, store: layerfs.Store, tmp_path: Path) -> None:
        self._check_chain(store, tmp_path, graph_layers(12))

    @pytest.mark.slow
    def test_graph_chain_long(self, store: layerfs.Store, tmp_path: Path) -> None:
        layers = graph_layers(self.chain_length)
        names = self._check_chain(store, tmp_path, layers, self.chain_check_every)
        for name in reversed(names):
            store.remove(name)
        assert list(store.walk()) == []

    def test_changes_and_export_round_trip(self, store: layerfs.Store, tmp_path: Path) -> None:
        layers = graph_layers(14)
        self._check_chain(store, tmp_path, layers)
        # Rebuild the chain from exported tars; every layer must come out identical.
        parent_new = None
        for i in range(len(layers)):
            name = f"layer-{i}"
            data = b"".join(store.export(name))
            assert b"".join(store.export(name)) == data, "export is not deterministic"
            info = store.apply(io.BytesIO(data), parent=parent_new)
            assert self.tree_of(store, info.name, mtimes=True) == self.tree_of(
                store, name, mtimes=True
            )
            again = store.apply(io.BytesIO(data), parent=parent_new)
            assert again.name == info.name
            parent_new = info.name
        changes = store.changes("layer-5")  # step 5: rmtree + re-create var/lib/data
        kinds = {c.path: c.kind for c in changes}
        assert kinds.get("var/lib/data/a") in (ChangeKind.ADD, ChangeKind.MODIFY)
        assert "var/lib/data" in kinds

    def test_changes_kinds(self, store: layerfs.Store) -> None:
        store.prepare("a")
        self.write_layer(
            store, "a", [("write", "keep", b"1"), ("write", "mod", b"1"), ("write", "del", b"1")]
        )
        store.commit("base", "a")
        store.prepare("b", "base")
        self.write_layer(
            store, "b", [("write", "mod", b"22"), ("rm", "del"), ("write", "new", b"3")]
        )
        store.commit("top", "b")
        got = {(c.kind, c.path) for c in store.changes("top")}
        assert (ChangeKind.MODIFY, "mod") in got
        assert (ChangeKind.DELETE, "del") in got
        assert (ChangeKind.ADD, "new") in got
        assert not any(path == "keep" for _, path in got)

    def test_usage_grows(self, store: layerfs.Store) -> None:
        store.prepare("a")
        before = store.usage("a")
        self.write_layer(store, "a", [("write", "big", os.urandom(1 << 20))])
        after = store.usage("a")
        assert after.size >= before.size + (1 << 20) - 4096
        assert after.inodes >= before.inodes + 1
        store.commit("c", "a")
        assert store.usage("c").size >= 1 << 20

    # -- layer tars -------------------------------------------------------------------

    def test_apply_whiteouts_and_opaque(self, store: layerfs.Store) -> None:
        base = store.apply(
            io.BytesIO(
                build_tar(
                    [
                        ("etc", None),
                        ("etc/a", b"a"),
                        ("etc/b", b"b"),
                        ("dir", None),
                        ("dir/old", b"old"),
                        ("dir/sub", None),
                        ("dir/sub/deep", b"deep"),
                    ]
                )
            )
        )
        top = store.apply(
            io.BytesIO(
                gzip.compress(
                    build_tar(
                        [
                            ("etc/.wh.a", b""),
                            ("dir", None),
                            ("dir/new", b"new"),
                            ("dir/.wh..wh..opq", b""),
                            ("etc/c", ("hardlink", "etc/b")),
                        ]
                    )
                )
            ),
            parent=base.name,
        )
        tree = self.tree_of(store, top.name)
        assert "etc/a" not in tree and "etc/b" in tree and "etc/c" in tree
        assert sorted(p for p in tree if p.startswith("dir/")) == ["dir/new"]
        assert top.parent == base.name
        assert top.labels["layerfs.diff-id"].startswith("sha256:")

    def test_apply_zstd(self, store: layerfs.Store) -> None:
        zstandard = pytest.importorskip("zstandard")
        data = zstandard.ZstdCompressor().compress(build_tar([("z", b"zstd content")]))
        info = store.apply(io.BytesIO(data))
        plain = store.apply(io.BytesIO(build_tar([("z", b"zstd content")])))
        assert info.name == plain.name  # chain ID is over the uncompressed tar

    @pytest.mark.parametrize(
        "entries",
        [
            [("../escape", b"x")],
            [("/abs", b"x")],
            [("a/../../escape", b"x")],
            [("ok", b"x"), ("link", ("hardlink", "../../etc/passwd"))],
            [("ok", b"x"), ("link", ("hardlink", "/etc/passwd"))],
            [("evil", ("symlink", "/")), ("link", ("hardlink", "evil/etc/passwd"))],
            [("evil", ("symlink", "../../..")), ("link", ("hardlink", "evil/etc/passwd"))],
        ],
        ids=[
            "dotdot",
            "absolute",
            "nested-dotdot",
            "hardlink-out",
            "hardlink-abs",
            "hardlink-through-abs-symlink",
            "hardlink-through-rel-symlink",
        ],
    )
    def test_apply_rejects_escapes(
        self, store: layerfs.Store, entries: list[tuple[str, Any]]
    ) -> None:
        base = store.apply(io.BytesIO(build_tar([("keep", b"k")])))
        before = list(store.walk())
        with pytest.raises(errors.InvalidArgument):
            store.apply(io.BytesIO(build_tar(entries)), parent=base.name)
        assert list(store.walk()) == before
        assert store.check() == []

    def test_apply_rejects_garbage_and_truncated(self, store: layerfs.Store) -> None:
        good = build_tar([("a", os.urandom(5000)), ("b", os.urandom(5000))])
        packed = gzip.compress(good)
        before = list(store.walk())
        for bad in [
            b"this is not a tar at all" * 40,
            good[:700],
            good[:1024],
            packed[: len(packed) // 2],
        ]:
            with pytest.raises(errors.InvalidArgument):
                store.apply(io.BytesIO(bad))
        assert list(store.walk()) == before
        assert store.check() == []

    @pytest.mark.parametrize(
        ("link", "lands_at"),
        [
            ("/usr/lib", "usr/lib/x.so"),
            ("usr/lib", "usr/lib/x.so"),
            ("/", "x.so"),
            ("../../..", "x.so"),
            ("/tmp", "tmp/x.so"),
        ],
    )
    def test_apply_through_symlink_in_parent_layer(
        self, store: layerfs.Store, link: str, lands_at: str
    ) -> None:
        """A path through a lower layer's symlink resolves inside the root, as containerd does."""
        base = store.apply(
            io.BytesIO(build_tar([("usr", None), ("usr/lib", None), ("lib", ("symlink", link))]))
        )
        outside = Path("/", lands_at)
        existed = outside.exists()
        top = store.apply(io.BytesIO(build_tar([("lib/x.so", b"elf")])), parent=base.name)
        tree = self.tree_of(store, top.name)
        assert tree[lands_at][4] == describe_bytes(b"elf")[4]
        assert tree["lib"][4] == link
        assert "lib/x.so" not in tree
        assert outside.exists() == existed
        assert store.check() == []

    def test_apply_through_symlink_in_same_layer(self, store: layerfs.Store) -> None:
        info = store.apply(
            io.BytesIO(build_tar([("evil", ("symlink", "/")), ("evil/etc/owned", b"x")]))
        )
        tree = self.tree_of(store, info.name)
        assert set(tree) == {"evil", "etc", "etc/owned"}
        assert not Path("/etc/owned").exists()

    # The rows of the layer-semantics table: each once went wrong on some driver.

    def _stack(self, store: layerfs.Store, *layers: list[tuple[str, Any]]) -> dict[str, Any]:
        parent = None
        for entries in layers:
            parent = store.apply(io.BytesIO(build_tar(entries)), parent=parent).name
        assert parent is not None
        return self.tree_of(store, parent)

    def test_apply_dir_made_where_whiteout_stood_is_opaque(self, store: layerfs.Store) -> None:
        tree = self._stack(
            store,
            [("d", None), ("d/y", b"y")],
            [(".wh.d", b""), ("d", None), ("d/x", b"x")],
        )
        assert sorted(tree) == ["d", "d/x"]

    def test_apply_opaque_after_dir_entries_drops_lower_children(
        self, store: layerfs.Store
    ) -> None:
        tree = self._stack(
            store,
            [("d", None), ("d/sub", None), ("d/sub/old", b"o"), ("d/keep", b"k")],
            [("d", None), ("d/sub", None), ("d/.wh..wh..opq", b"")],
        )
        assert sorted(tree) == ["d", "d/sub"]

    def test_apply_opaque_keeps_entries_of_its_own_layer(self, store: layerfs.Store) -> None:
        tree = self._stack(
            store,
            [("d", None), ("d/old", b"o")],
            [("d/sub/f", b"f"), ("d/.wh..wh..opq", b"")],
        )
        assert sorted(tree) == ["d", "d/sub", "d/sub/f"]

    def test_apply_whiteout_spares_its_own_layer(self, store: layerfs.Store) -> None:
        tree = self._stack(
            store,
            [("a", b"lower"), ("d", None), ("d/y", b"y")],
            [("a", b"upper"), (".wh.a", b""), ("d", None), ("d/x", b"x"), (".wh.d", b"")],
        )
        assert sorted(tree) == ["a", "d", "d/x"]
        assert tree["a"][4] == describe_bytes(b"upper")[4]

    def test_apply_hardlink_to_name_recreated_after_whiteout(self, store: layerfs.Store) -> None:
        tree = self._stack(
            store,
            [("a", b"old")],
            [(".wh.a", b""), ("a", b"new"), ("b", ("hardlink", "a"))],
        )
        assert tree["a"][4] == tree["b"][4] == describe_bytes(b"new")[4]
        assert tree["a"][5] == tree["b"][5]

    def test_apply_hardlink_to_whited_out_name_is_refused(self, store: layerfs.Store) -> None:
        base = store.apply(io.BytesIO(build_tar([("a", b"old")])))
        with pytest.raises(errors.InvalidArgument, match="no such file"):
            store.apply(
                io.BytesIO(build_tar([(".wh.a", b""), ("b", ("hardlink", "a"))])),
                parent=base.name,
            )
        assert store.check() == []

    def test_apply_name_too_long(self, store: layerfs.Store) -> None:
        # Over NAME_MAX; over PATH_MAX; under PATH_MAX alone but not below the store root.
        for name in ["n" * 256, "d/" * 2100 + "f", ("x" * 200 + "/") * 20 + "f"]:
            with pytest.raises(errors.InvalidArgument, match="too long"):
                store.apply(io.BytesIO(build_tar([(name, b"x")])))
        assert list(store.walk()) == []

    def test_chain_id_does_not_depend_on_parent_name(self, store: layerfs.Store) -> None:
        layer0 = build_tar([("base", b"b")])
        layer1 = build_tar([("top", b"t")])
        applied = store.apply(io.BytesIO(layer0))
        on_applied = store.apply(io.BytesIO(layer1), parent=applied.name)
        # The same tree, committed by hand under a user's name.
        store.prepare("work")
        with store.mounted("work") as root:
            with tarfile.open(fileobj=io.BytesIO(layer0)) as tar:
                tar.extractall(root, filter="fully_trusted")
        store.commit("my-base", "work")
        export0 = b"".join(store.export("my-base"))
        on_named = store.apply(io.BytesIO(layer1), parent="my-base")
        import hashlib

        diff0 = "sha256:" + hashlib.sha256(export0).hexdigest()
        diff1 = "sha256:" + hashlib.sha256(layer1).hexdigest()
        chain = "sha256:" + hashlib.sha256(f"{diff0} {diff1}".encode()).hexdigest()
        assert on_named.name == chain
        assert (
            on_applied.name
            == "sha256:" + hashlib.sha256(f"{applied.name} {diff1}".encode()).hexdigest()
        )
        # The export of a tree unpacked from a layer is that layer here, so
        # both applies name the same chain and the second finds the first.
        assert on_named.name == on_applied.name or on_named.parent == "my-base"

    def test_committed_mount_is_readonly(self, store: layerfs.Store) -> None:
        if not self.views_are_readonly:
            pytest.skip("read-only mounts need root")
        base = store.apply(io.BytesIO(build_tar([("f", b"1")])))
        top = store.apply(io.BytesIO(build_tar([("g", b"2")])), parent=base.name)
        for name in (base.name, top.name):
            with store.mounted(name) as root:
                assert Path(root, "f").read_bytes() == b"1"
                with pytest.raises(OSError) as exc:
                    Path(root, "new").write_text("no")
                assert exc.value.errno == errno.EROFS
                with pytest.raises(OSError) as exc:
                    Path(root, "f").write_text("no")
                assert exc.value.errno == errno.EROFS

    def test_status_and_check(self, store: layerfs.Store) -> None:
        store.prepare("a")
        status = store.status()
        assert status["driver"] == self.driver
        assert status["snapshots"] == {"active": 1, "view": 0, "committed": 0}
        assert store.check() == []


def describe_bytes(data: bytes) -> Any:
    """The ``describe`` entry of a fresh 0644 root-owned regular file with ``data``."""
    import hashlib
    import stat as stat_

    uid, gid = os.geteuid(), os.getegid()
    return (
        stat_.S_IFREG,
        0o644 & ~_umask(),
        uid,
        gid,
        hashlib.sha256(data).hexdigest(),
        ("link-group", "shared"),
        (),
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _unmount_everything(store: layerfs.Store) -> None:
    """Drop every mount the store holds (a failed test may leave some)."""
    import sqlite3

    db = sqlite3.connect(str(store.root / "metadata.db"))
    try:
        rows = db.execute(
            "SELECT s.key, m.target, m.refs FROM mounts m JOIN snapshots s ON s.id = m.snapshot_id"
        ).fetchall()
    finally:
        db.close()
    for key, target, refs in rows:
        for _ in range(max(refs, 1)):
            try:
                store.unmount(key, target)
            except errors.NotFound:
                break
