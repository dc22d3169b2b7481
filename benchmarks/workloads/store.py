"""store: the store's own cost per call on a store that holds N snapshots.

Setup fills the store with N empty snapshots of one empty image, half of
them committed, each labelled ``n=0..9``. Each round then times ``stat``
of every seventh snapshot, a ``walk`` of all of them and a ``walk`` with
two selectors (``kind==committed,labels.n==3``), per snapshot in
microseconds; and ``prepare`` + ``commit`` of one more empty snapshot
(the p50 and p99 of a batch, in ms; removed again untimed). The snapshots
are empty, so these are the metadata database's, intents' and
validation's cost plus the least the driver does for an empty tree.

The ``native`` column does the filesystem work alone: ``stat`` of a
directory, a scan of the directory holding N of them, and ``mkdir`` +
``rename``; the ratios thus read as what the store adds. A peer column
(``fuse-overlayfs``) is measured on the overlay store that makes its
layers.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..stats import Metric, percentile
from ..targets import NativeTarget, PeerTarget, StoreTarget, Target
from ..workload import Timer, Workload

FILTER = "kind==committed,labels.n==3"
STAT_EVERY = 7


def _store(target: Target) -> Any:
    """The ``layerfs.Store`` behind a store or peer column."""
    if isinstance(target, PeerTarget):
        return target.inner.store
    if isinstance(target, StoreTarget):
        return target.store
    raise TypeError(f"{target.name} has no store")


class StoreWorkload(Workload):
    """stat and walk at N snapshots (µs), prepare+commit of an empty snapshot (ms)."""

    name = "store"
    title = (
        "store overhead at N snapshots: stat, walk, walk with 2 selectors (µs per snapshot); "
        "prepare+commit of an empty snapshot (ms, p50 and p99)"
    )
    warmup = False
    sizes = {
        "quick": {"count": 200, "ops": 50},
        "default": {"count": 2000, "ops": 200},
        "full": {"count": 10000, "ops": 200},
    }

    def metrics(self) -> list[Metric]:
        n = self.size["count"]
        return [
            Metric(f"stat, {n}", "µs"),
            Metric(f"walk, {n}", "µs"),
            Metric(f"walk 2 selectors, {n}", "µs"),
            Metric("prepare+commit p50", "ms"),
            Metric("prepare+commit p99", "ms"),
        ]

    def setup(self, target: Target) -> None:
        count = self.size["count"]
        if isinstance(target, NativeTarget):
            home = target.fs.mountpoint / target.new_key("store-dirs")
            home.mkdir()
            dirs = [f"s{i}" for i in range(count)]
            for name in dirs:
                (home / name).mkdir()
            self.state[target.name] = {"home": home, "names": dirs}
            return
        store = _store(target)
        base = target.layer(lambda path: None)
        names: list[str] = []
        # Recorded first, so that teardown removes what a failed fill made.
        self.state[target.name] = {"base": base, "names": names}
        for i in range(count):
            key = target.new_key("st")
            store.prepare(key, base, labels={"n": str(i % 10)})
            names.append(key)
            if i % 2:
                store.commit(f"{key}-c", key)
                names[-1] = f"{key}-c"

    def run(self, target: Target) -> dict[str, float]:
        st = self.state[target.name]
        names: list[str] = st["names"]
        sample = names[::STAT_EVERY]
        ops = self.size["ops"]
        if isinstance(target, NativeTarget):
            return _native_round(st["home"], names, sample, ops, target)
        store = _store(target)
        out: dict[str, float] = {}
        with Timer() as t:
            for name in sample:
                store.stat(name)
        out[f"stat, {len(names)}"] = t.seconds * 1e6 / len(sample)
        with Timer() as t:
            seen = sum(1 for _ in store.walk())
        if seen < len(names):
            raise RuntimeError(f"walk saw {seen} snapshots, the store holds {len(names)}")
        out[f"walk, {len(names)}"] = t.seconds * 1e6 / seen
        with Timer() as t:
            matched = sum(1 for _ in store.walk(FILTER))
        if not matched:
            raise RuntimeError(f"walk({FILTER!r}) matched nothing")
        out[f"walk 2 selectors, {len(names)}"] = t.seconds * 1e6 / seen
        times: list[float] = []
        made: list[str] = []
        try:
            for _ in range(ops):
                key = target.new_key("pc")
                with Timer() as t:
                    store.prepare(key, st["base"])
                    store.commit(f"{key}-c", key)
                made.append(f"{key}-c")
                times.append(t.seconds * 1000)
        finally:
            for name in made:
                store.remove(name)
        out["prepare+commit p50"] = percentile(times, 50)
        out["prepare+commit p99"] = percentile(times, 99)
        return out

    def teardown(self, target: Target) -> None:
        st = self.state.get(target.name, {})
        if "home" in st:
            shutil.rmtree(st["home"])
        elif "base" in st:
            store = _store(target)
            for name in reversed(st["names"]):
                store.remove(name)
        super().teardown(target)


def _native_round(
    home: Path, names: list[str], sample: list[str], ops: int, target: Target
) -> dict[str, float]:
    """The filesystem work alone: stat, a scan with stat, mkdir + rename."""
    out: dict[str, float] = {}
    with Timer() as t:
        for name in sample:
            os.stat(home / name)
    out[f"stat, {len(names)}"] = t.seconds * 1e6 / len(sample)
    with Timer() as t:
        with os.scandir(home) as it:
            seen = sum(1 for e in it if e.stat(follow_symlinks=False))
    out[f"walk, {len(names)}"] = t.seconds * 1e6 / seen
    with Timer() as t:
        with os.scandir(home) as it:
            sum(1 for e in it if e.name.endswith("3") and e.stat(follow_symlinks=False))
    out[f"walk 2 selectors, {len(names)}"] = t.seconds * 1e6 / seen
    times: list[float] = []
    for _ in range(ops):
        key = target.new_key("pc")
        with Timer() as t:
            (home / key).mkdir()
            os.rename(home / key, home / f"{key}-c")
        times.append(t.seconds * 1000)
        (home / f"{key}-c").rmdir()
    out["prepare+commit p50"] = percentile(times, 50)
    out["prepare+commit p99"] = percentile(times, 99)
    return out


WORKLOAD = StoreWorkload
