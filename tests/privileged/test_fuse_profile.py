"""The fuse server's opt-in per-opcode profile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from layerfs.drivers.fuse import profile
from layerfs.drivers.fuse.session import Session
from layerfs.drivers.fuse.testing import build_sample_layers, fuse_mounted

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


def test_profile_counts_and_splits_every_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    layers = build_sample_layers(tmp_path / "layers")
    out = tmp_path / "prof"
    out.mkdir()
    monkeypatch.setenv(profile.ENV, str(out))
    mnt = tmp_path / "mnt"
    with fuse_mounted(layers, mnt, threads=2):
        monkeypatch.delenv(profile.ENV)
        assert (mnt / "a" / "f1").read_text() == "one\n"
        for i in range(20):
            (mnt / f"new{i}").write_text("x")
            os.chmod(mnt / f"new{i}", 0o600)
            os.unlink(mnt / f"new{i}")
        with pytest.raises(FileNotFoundError):
            os.lstat(mnt / "absent")
    profiles = profile.load(str(out))
    assert len(profiles) == 1, "the server writes one profile as it exits"
    prof = profile.merge(profiles)
    assert prof["CREATE"]["count"] == 20
    assert prof["UNLINK"]["count"] == 20
    assert prof["SETATTR"]["count"] >= 20
    assert prof["LOOKUP"]["count"] >= 3  # a, f1, absent
    for row in prof.values():
        assert set(row) == set(profile.FIELDS)
        assert row["decode_ns"] > 0 and row["reply_ns"] > 0
    # Syscalls are timed apart from the union logic: CREATE makes the file, chowns it, stats it.
    assert prof["CREATE"]["syscalls_ns"] > 0
    table = profile.format_table(prof)
    assert "CREATE" in table and "LOOKUP" in table


def test_profile_is_off_unless_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(profile.ENV, raising=False)
    assert Session({}).profiler is None
    monkeypatch.setenv(profile.ENV, str(tmp_path))
    assert isinstance(Session({}).profiler, profile.Profiler)
    assert profile.from_env({profile.ENV: "relative/dir"}) is None
    assert profile.from_env({}) is None


def test_merge_and_per_request_figures() -> None:
    a = {
        "LOOKUP": {
            "count": 2,
            "decode_ns": 2000,
            "union_ns": 4000,
            "syscalls_ns": 6000,
            "reply_ns": 8000,
        }
    }
    b = {
        "LOOKUP": {"count": 2, "decode_ns": 2000, "union_ns": 0, "syscalls_ns": 2000, "reply_ns": 0}
    }
    total = profile.merge([a, b])
    assert total["LOOKUP"]["count"] == 4
    us = profile.per_request_us(total["LOOKUP"])
    assert us == {"decode": 1.0, "union": 1.0, "syscalls": 2.0, "reply": 2.0, "total": 6.0}


def test_a_server_forked_by_an_earlier_fork_server_profiles_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import layerfs

    monkeypatch.delenv(profile.ENV, raising=False)
    out = tmp_path / "prof"
    out.mkdir()
    with layerfs.Store(tmp_path / "store", driver="fuse") as store:
        store.prepare("before")
        with store.mounted("before"):
            pass  # the fork server starts here, with no profile in its environment
        monkeypatch.setenv(profile.ENV, str(out))
        store.prepare("after")
        with store.mounted("after") as root:
            Path(root, "new").write_text("x")
        monkeypatch.delenv(profile.ENV)
        store.remove("before")
        store.remove("after")
    profiles = profile.load(str(out))
    assert len(profiles) == 1, "only the server mounted with the profile asked for writes one"
    assert profile.merge(profiles)["CREATE"]["count"] == 1
