"""What survives a power loss: the store's ``sync`` option.

With ``sync=on`` (the default) the database runs ``synchronous=FULL`` and a
snapshot's storage is synced before the transaction that marks it
committed; ``sync=off`` skips both.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

import layerfs
from layerfs import _records, errors
from layerfs.testing.suite import build_tar


def _synchronous(store: layerfs.Store) -> int:
    with store._meta.transaction(write=False) as db:
        return int(db.execute("PRAGMA synchronous").fetchone()[0])


def _record_syncs(store: layerfs.Store, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Record, at each driver sync, the state of the snapshot being synced."""
    seen: list[tuple[str, str]] = []

    def sync(ref: Any) -> None:
        with store._meta.transaction(write=False) as db:
            rec = _records.by_id(db, int(ref.id))
        assert rec is not None
        seen.append((rec.key, rec.state))

    monkeypatch.setattr(store._driver, "sync", sync)
    return seen


def test_commit_and_apply_sync_before_marking_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with layerfs.Store(tmp_path / "s", driver="copy") as store:
        assert _synchronous(store) == 2  # FULL
        seen = _record_syncs(store, monkeypatch)
        store.prepare("a")
        store.commit("c", "a")
        info = store.apply(io.BytesIO(build_tar([("f", b"x")])))
        assert seen == [("c", "committing"), (info.name, "committing")]
        assert store.stat("c").kind is layerfs.Kind.COMMITTED


def test_sync_off_skips_both_syncs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with layerfs.Store(tmp_path / "s", driver="copy", options={"sync": "off"}) as store:
        assert _synchronous(store) == 1  # NORMAL
        seen = _record_syncs(store, monkeypatch)
        store.prepare("a")
        store.commit("c", "a")
        assert seen == []
    with layerfs.Store(tmp_path / "s") as store:  # the choice is recorded with the store
        assert _synchronous(store) == 1


def test_default_driver_sync_writes_back_the_home(tmp_path: Path) -> None:
    with layerfs.Store(tmp_path / "s", driver="copy") as store:
        store.prepare("a")
        store.commit("c", "a")  # the real syncfs(2) runs without error
        assert store.check() == []


def test_bad_sync_value_is_named(tmp_path: Path) -> None:
    with pytest.raises(errors.InvalidArgument, match="sync"):
        layerfs.Store(tmp_path / "s", driver="copy", options={"sync": "sometimes"})
    with layerfs.Store(tmp_path / "s", driver="copy") as store:  # nothing bad was recorded
        assert _synchronous(store) == 2


def test_bench_has_an_opt_in_column_without_sync() -> None:
    from layerfs.benchmarks import columns

    spec = columns.spec("overlay-nosync")
    assert (spec.driver, dict(spec.options)) == ("overlay", {"sync": "off"})
    assert "overlay-nosync" not in columns.COLUMN_NAMES  # runs only when named
