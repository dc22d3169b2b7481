"""A Hypothesis state machine: random snapshot operations against a plain dict model.

The model is a dict from key to (kind, parent, files); after every step,
the store's snapshots, kinds, parents and trees must match it exactly.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import layerfs
from layerfs import Kind, errors
from layerfs.testing.suite import build_tar

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
PATHS = st.sampled_from(["x", "y", "dir/z", "dir/w"])
DATA = st.binary(min_size=0, max_size=16)


class SnapshotModel(RuleBasedStateMachine):
    """Drives a ``copy`` store and a dict model side by side."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.mkdtemp(prefix="layerfs-sm-")
        self.store = layerfs.Store(Path(self.tmp) / "store", driver="copy")
        self.model: dict[str, tuple[Kind, str | None, dict[str, bytes]]] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _files_of(self, parent: str | None) -> dict[str, bytes]:
        return dict(self.model[parent][2]) if parent else {}

    @rule(key=KEYS, parent=st.none() | KEYS, view=st.booleans())
    def create(self, key: str, parent: str | None, view: bool) -> None:
        method = self.store.view if view else self.store.prepare
        if key in self.model:
            try:
                method(key, parent)
            except (errors.AlreadyExists, errors.NotFound, errors.FailedPrecondition):
                return
            raise AssertionError("duplicate key accepted")
        if parent is not None and (
            parent not in self.model or self.model[parent][0] is not Kind.COMMITTED
        ):
            try:
                method(key, parent)
            except (errors.NotFound, errors.FailedPrecondition):
                return
            raise AssertionError("bad parent accepted")
        method(key, parent)
        self.model[key] = (Kind.VIEW if view else Kind.ACTIVE, parent, self._files_of(parent))

    @rule(key=KEYS, path=PATHS, data=DATA)
    def write(self, key: str, path: str, data: bytes) -> None:
        if key not in self.model or self.model[key][0] is not Kind.ACTIVE:
            return
        with self.store.mounted(key) as root:
            os.makedirs(os.path.dirname(os.path.join(root, path)), exist_ok=True)
            Path(root, path).write_bytes(data)
        files = self.model[key][2]
        files[path] = data

    @rule(key=KEYS, path=PATHS)
    def delete(self, key: str, path: str) -> None:
        if key not in self.model or self.model[key][0] is not Kind.ACTIVE:
            return
        files = self.model[key][2]
        if path not in files:
            return
        with self.store.mounted(key) as root:
            os.unlink(os.path.join(root, path))
        del files[path]

    @rule(name=KEYS, key=KEYS)
    def commit(self, name: str, key: str) -> None:
        ok = (
            key in self.model
            and self.model[key][0] is Kind.ACTIVE
            and (name == key or name not in self.model)
        )
        if not ok:
            try:
                self.store.commit(name, key)
            except (errors.NotFound, errors.FailedPrecondition, errors.AlreadyExists):
                return
            raise AssertionError("bad commit accepted")
        self.store.commit(name, key)
        kind, parent, files = self.model.pop(key)
        self.model[name] = (Kind.COMMITTED, parent, files)

    @rule(key=KEYS)
    def remove(self, key: str) -> None:
        has_children = any(p == key for _, p, _ in self.model.values())
        if key not in self.model or has_children:
            try:
                self.store.remove(key)
            except (errors.NotFound, errors.FailedPrecondition):
                return
            raise AssertionError("bad remove accepted")
        self.store.remove(key)
        del self.model[key]

    @precondition(lambda self: len(self.model) < 12)
    @rule(
        parent=st.none() | KEYS,
        files=st.dictionaries(st.sampled_from(["l1", "l2", "x"]), DATA, max_size=3),
    )
    def apply(self, parent: str | None, files: dict[str, bytes]) -> None:
        if parent is not None and (
            parent not in self.model or self.model[parent][0] is not Kind.COMMITTED
        ):
            return
        tar = build_tar(sorted(files.items()))
        info = self.store.apply(io.BytesIO(tar), parent=parent)
        if info.name not in self.model:
            merged = self._files_of(parent)
            merged.update(files)
            self.model[info.name] = (Kind.COMMITTED, parent, merged)

    @invariant()
    def matches_model(self) -> None:
        infos = {i.name: i for i in self.store.walk()}
        assert set(infos) == set(self.model)
        for key, (kind, parent, files) in self.model.items():
            assert infos[key].kind is kind
            assert infos[key].parent == parent
            root = self.store.mount(key)
            try:
                found = {}
                for top, _dirs, names in os.walk(root):
                    for n in names:
                        full = os.path.join(top, n)
                        found[os.path.relpath(full, root)] = Path(full).read_bytes()
                assert found == files, (key, found, files)
            finally:
                self.store.unmount(key)


TestSnapshotModel = SnapshotModel.TestCase
TestSnapshotModel.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)
