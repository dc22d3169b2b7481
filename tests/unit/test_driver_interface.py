"""The driver interface: optional shortcuts are declared, and undeclared ones refuse."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from layerfs.drivers.copy import CopyDriver

import layerfs
from layerfs import errors
from layerfs._types import Kind, Mount, Usage
from layerfs.driver import Capabilities, Driver, SnapshotRef
from layerfs.testing.suite import build_tar

REF = SnapshotRef("1", "a", Kind.ACTIVE)


class _Bare(Driver):
    """Only the required methods."""

    name = "bare"

    def create(self, snap: SnapshotRef) -> None: ...

    def commit(self, snap: SnapshotRef) -> None: ...

    def remove(self, snap_id: str) -> None: ...

    def mounts(self, snap: SnapshotRef) -> list[Mount]:
        return []

    def usage(self, snap: SnapshotRef) -> Usage:
        return Usage()


def test_a_driver_declares_no_shortcut_unless_it_says_so(tmp_path: Path) -> None:
    d = _Bare(tmp_path, {}, None)  # type: ignore[arg-type]
    assert d.capabilities == Capabilities(direct_path=False, diff_dir=False)
    with pytest.raises(errors.Unsupported, match="'bare'.*capabilities.direct_path"):
        d.direct_path(REF)
    with pytest.raises(errors.Unsupported, match="'bare'.*capabilities.diff_dir"):
        d.diff_dir(REF)


def test_copy_declares_direct_paths_only(tmp_path: Path) -> None:
    d = CopyDriver(tmp_path, {}, None)
    assert d.capabilities == Capabilities(direct_path=True)
    d.create(REF)
    assert d.direct_path(REF) == tmp_path / "snapshots" / "1"
    with pytest.raises(errors.Unsupported):
        d.diff_dir(REF)


def test_capabilities_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Capabilities().diff_dir = True  # type: ignore[misc]


def test_the_store_asks_only_for_declared_shortcuts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Layers go the generic way on a driver without ``diff_dir``, which is never called."""
    with layerfs.Store(tmp_path / "s", driver="copy") as store:

        def never(*args: Any) -> Any:
            raise AssertionError("diff_dir called on a driver that does not declare it")

        monkeypatch.setattr(store._driver, "diff_dir", never)
        base = store.apply(io.BytesIO(build_tar([("etc", None), ("etc/a", b"1\n")])))
        child = store.apply(
            io.BytesIO(build_tar([("etc", None), ("etc/b", b"2\n")])), parent=base.name
        )
        assert [(c.kind.value, c.path) for c in store.changes(child.name)] == [("add", "etc/b")]
        assert b"etc/b" in b"".join(store.export(child.name))
        path = store.mount(child.name)  # a plain directory: no mount made
        try:
            assert (Path(path) / "etc" / "a").read_text() == "1\n"
        finally:
            store.unmount(child.name)
