"""devmapper must never destroy data it was not asked to: discard only before a
delete, never wipe a device holding a pool, and read dmsetup's errors right
whatever the locale.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from dmpool import ScratchPool
from dmstore import SMALL, opened, read, write
from layerfs.drivers.devmapper import dmsetup
from layerfs.drivers.devmapper.pool import holds_pool_metadata

import layerfs
from layerfs import errors

# -- item 1: discard=true discards only what is deleted ---------------------------------------


def test_discard_keeps_committed_layers_and_the_base(tmp_path: Path) -> None:
    data = os.urandom(1 << 20)
    with opened(tmp_path / "s", **SMALL, discard="true") as store:
        store.prepare("a")
        write(store, "a", "blob", data)
        store.commit("layer", "a")  # deactivates the device: no discard may happen here
        store.view("v", "layer")
        assert read(store, "v", "blob") == data
        store.prepare("b")  # a second snapshot of the base still finds its filesystem
        write(store, "b", "x", b"x")
        store.remove("v")
        store.remove("b")
        assert store.check() == []


# -- item 2: a metadata device that holds a pool is not wiped ----------------------------------


@contextlib.contextmanager
def loop_pair(where: Path) -> Iterator[tuple[str, str]]:
    """A data and a metadata loop device (512 MiB, 16 MiB sparse files)."""
    where.mkdir(parents=True, exist_ok=True)
    loops: list[str] = []
    try:
        for name, size in (("data", 512 << 20), ("meta", 16 << 20)):
            path = where / name
            with open(path, "wb") as f:
                f.truncate(size)
            out = subprocess.run(
                ["losetup", "-f", "--show", str(path)], check=True, capture_output=True, text=True
            )
            loops.append(out.stdout.strip())
        yield loops[0], loops[1]
    finally:
        for dev in loops:
            subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_devices_holding_a_pool_are_not_wiped(tmp_path: Path) -> None:
    data = os.urandom(256 << 10)
    with loop_pair(tmp_path / "devs") as (data_dev, meta_dev):
        devices = {**SMALL, "data_device": data_dev, "metadata_device": meta_dev}
        devices.pop("data_size")
        with opened(tmp_path / "first", **devices) as first:
            first.prepare("a")
            write(first, "a", "blob", data)
            first.commit("layer", "a")
            # Its pool is live: a second store must not build a pool on the same devices.
            with pytest.raises(errors.Busy):
                layerfs.Store(tmp_path / "second", driver="devmapper", options=devices)
        assert holds_pool_metadata(meta_dev)
        # The first store's pool is down now (its database lost, say): still refused.
        with pytest.raises(errors.FailedPrecondition, match="reformat=true"):
            layerfs.Store(tmp_path / "third", driver="devmapper", options=devices)
        with opened(tmp_path / "first", **devices) as first:
            first.view("v", "layer")
            assert read(first, "v", "blob") == data  # nothing was lost
            first.remove("v")
        # Asked in so many words, a new store may wipe it.
        with opened(tmp_path / "fourth", **devices, reformat="true") as fourth:
            fourth.prepare("n")
            assert list(fourth.walk()) and fourth.check() == []


# -- item 4: dmsetup's errors under another locale ---------------------------------------------


def test_dmsetup_errors_are_recognised_under_another_locale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scratch_pool: ScratchPool
) -> None:
    locales = tmp_path / "locales"
    locales.mkdir()
    subprocess.run(
        ["localedef", "-i", "de_DE", "-f", "UTF-8", str(locales / "de_DE.UTF-8")],
        check=True,
        capture_output=True,
    )
    monkeypatch.setenv("LOCPATH", str(locales))
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    pool = scratch_pool.name
    dmsetup.message(pool, "create_thin 1")
    raw = subprocess.run(
        ["dmsetup", "message", pool, "0", "create_thin 1"], capture_output=True, text=True
    )
    # The locale really translates dmsetup's errors, or this test proves nothing.
    assert raw.returncode != 0 and "File exists" not in raw.stderr, raw.stderr
    with pytest.raises(errors.AlreadyExists):
        dmsetup.message(pool, "create_thin 1")
    with pytest.raises(errors.NotFound):
        dmsetup.message(pool, "delete 99")
    assert dmsetup.remove("lfstest-no-such-device", deferred=False)  # gone counts as done
    dmsetup.message(pool, "delete 1")
