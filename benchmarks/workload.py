"""What a workload is: the base class every module in ``workloads/`` subclasses.

A workload is measured the same way on every column:

1. ``setup(target)`` builds what it needs (layers, files), untimed;
2. ``run(target)`` does the timed work once and returns one value per
   metric; the runner calls it for a warm-up and then ``runs`` times,
   interleaving the columns round-robin;
3. ``teardown(target)`` removes what setup made.

Sizes come from ``sizes[preset]`` (``quick``, ``default``, ``full``), so one
module holds the whole definition of what it measures at each scale.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from .stats import Metric
from .targets import Target

PRESETS = ("quick", "default", "full")


def drop_caches() -> None:
    """Write back dirty data and drop the page cache, dentries and inodes (needs root)."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


@dataclasses.dataclass
class Context:
    """What the runner gives every workload.

    Attributes:
        preset: ``quick``, ``default`` or ``full``.
        workdir: a directory for inputs shared by all columns (layer tars).
        drop_caches: empties the page cache (a no-op in unit tests).
        shared: a cache for inputs built once per run (see ``shared_input``).
    """

    preset: str
    workdir: Path
    drop_caches: Callable[[], None] = drop_caches
    shared: dict[str, Any] = dataclasses.field(default_factory=dict)

    def shared_input(self, key: str, build: Callable[[], Any]) -> Any:
        """Return ``build()``'s result, building it once per run under ``key``."""
        if key not in self.shared:
            self.shared[key] = build()
        return self.shared[key]


class Workload(abc.ABC):
    """Base class of bench workloads.

    Class attributes:
        name: the workload's name on the command line (``"copy-up"``).
        title: one line saying what it measures and in which unit.
        sizes: preset name -> the sizes of that preset (workload-specific keys).
        warmup: whether a warm-up round is worth its time.
        max_runs: preset name -> cap on measured rounds, for slow workloads
            whose figure is a count rather than a time.

    Args:
        ctx: the run's context.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    sizes: ClassVar[dict[str, dict[str, Any]]] = {}
    #: False for counts that a warm-up cannot change (cache sizes, disk usage).
    warmup: ClassVar[bool] = True
    #: Preset name -> at most this many measured runs (unless --runs says otherwise).
    max_runs: ClassVar[dict[str, int]] = {}

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.size: dict[str, Any] = dict(self.sizes[ctx.preset])
        self.state: dict[str, dict[str, Any]] = {}

    @abc.abstractmethod
    def metrics(self) -> list[Metric]:
        """Return the metrics ``run`` reports, in display order."""

    def not_for(self, target: Target) -> str | None:
        """Why this workload measures nothing on ``target``, or None when it does.

        A column it does not apply to gets that reason as its note and does
        not count as failed. Default: it applies to every column.
        """
        return None

    def setup(self, target: Target) -> None:
        """Build what ``run`` needs on ``target`` (untimed). Default: nothing."""
        self.state[target.name] = {}

    @abc.abstractmethod
    def run(self, target: Target) -> dict[str, float]:
        """Do the measured work once; return metric name -> value."""

    def teardown(self, target: Target) -> None:
        """Remove what ``setup`` and ``run`` made on ``target``."""
        self.state.pop(target.name, None)
        target.remove_all()


class Timer:
    """A monotonic stopwatch: ``with Timer() as t: ...``; then ``t.seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> Timer:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start


def write_file(path: Path, size: int, seed: int = 0) -> None:
    """Write ``size`` bytes of non-repeating (incompressible enough) data to ``path``."""
    chunk = (seed.to_bytes(8, "little") + os.urandom(1 << 16))[: 1 << 16]
    block = chunk * 16  # 1 MiB
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n
