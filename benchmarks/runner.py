"""The bench runner: scratch filesystems, columns, warm-up, interleaved runs, results.

One run:

1. make a scratch directory (``--scratch`` or a new one in /var/tmp) and,
   per column, a loop-backed filesystem in it with the column's store;
2. per workload: set up every column, then one warm-up round and
   ``runs`` measured rounds, each round visiting the columns in turn
   (starting one further along each round, so neither drift nor order
   favours a column), then tear down;
3. summarise (median, min, max, ratio to native), and undo everything,
   also on Ctrl-C, SIGTERM or an exception (see ``cleanup``).

A column that fails a workload gets a note instead of figures; the rest
of the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from layerfs import errors

from . import columns as cols
from .cleanup import Cleanup, interrupt_on_signals, mounts_below
from .scratch import ScratchFs, make_scratch_fs
from .stats import Metric, Result, summarize
from .targets import Target
from .workload import Context, Workload, drop_caches
from .workloads import load as load_workload

#: Apparent size of each column's sparse image, per preset.
IMAGE_SIZE = {"quick": 8 << 30, "default": 32 << 30, "full": 96 << 30}
#: (warm-up rounds, measured rounds) per preset, unless ``--runs`` says otherwise.
ROUNDS = {"quick": (1, 2), "default": (1, 3), "full": (1, 5)}


@dataclasses.dataclass
class RunConfig:
    """What to run.

    Attributes:
        workloads: workload names, in order.
        columns: column names, in order (``native`` is added when missing).
        preset: ``quick``, ``default`` or ``full``.
        runs: measured rounds (None: the preset's).
        fstype: scratch filesystem type.
        scratch: parent directory for the run's scratch dir (None: /var/tmp).
        direct_io: ask for direct-I/O loop devices.
    """

    workloads: list[str]
    columns: list[str]
    preset: str = "default"
    runs: int | None = None
    fstype: str = "ext4"
    scratch: Path | None = None
    direct_io: bool = True


@dataclasses.dataclass
class BenchReport:
    """The outcome of a run: machine facts and one result per (workload, column, metric)."""

    machine: dict[str, Any]
    results: list[Result]
    titles: dict[str, str] = dataclasses.field(default_factory=dict)

    def failed_columns(self) -> list[str]:
        """Return the columns that ran but gave no figure somewhere (not the missing ones)."""
        missing = self.machine.get("missing", {})
        return sorted(
            {
                r.driver
                for r in self.results
                if r.median is None and r.applies and r.driver not in missing
            }
        )

    def to_json(self) -> dict[str, Any]:
        """Return the JSON document ``--json`` writes."""
        return {
            "machine": self.machine,
            "workloads": self.titles,
            "results": [r.to_json() for r in self.results],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchReport:
        """Read a document written by ``to_json``.

        Raises:
            errors.InvalidArgument: the document lacks ``machine`` or ``results``.
        """
        try:
            return cls(
                machine=dict(data["machine"]),
                results=[Result.from_json(r) for r in data["results"]],
                titles=dict(data.get("workloads", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.InvalidArgument(
                f"not a layerfs bench result file (missing or bad {exc}); "
                "use a file written by `layerfs bench --json`"
            ) from exc


class ProgressSink(Protocol):
    """Where the runner reports progress (the CLI's rich display, or nothing)."""

    def start(self, total: int) -> None:
        """The run has ``total`` steps."""

    def step(self, workload: str, column: str, what: str) -> None:
        """One step is being done: ``what`` on ``column`` for ``workload``."""

    def log(self, message: str) -> None:
        """Show a one-line message (a column failed, a column is missing)."""


class NoProgress:
    """A ``ProgressSink`` that shows nothing."""

    def start(self, total: int) -> None:
        """Ignore."""

    def step(self, workload: str, column: str, what: str) -> None:
        """Ignore."""

    def log(self, message: str) -> None:
        """Ignore."""


def need_root() -> str | None:
    """Say why the bench cannot run without root, or None when it is root."""
    if os.geteuid() != 0:
        return (
            "layerfs bench needs root: it makes loop devices, formats and mounts "
            "scratch filesystems, and drops the page cache. Run it with sudo."
        )
    return None


def machine_facts(fstype: str) -> dict[str, Any]:
    """Return the facts about this machine that the report starts with."""
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "kernel": os.uname().release,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(mem / (1 << 30), 1),
        "fs": fstype,
        "fuse_passthrough_offered": cols.fuse_passthrough_offered(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def rounds(preset: str, runs: int | None) -> tuple[int, int]:
    """Return (warm-up rounds, measured rounds) for a preset and a ``--runs`` value."""
    warmup, measured = ROUNDS[preset]
    if runs is not None:
        measured = runs
    return warmup, measured


def workload_rounds(wl: Workload, warmup: int, runs: int, explicit: bool) -> tuple[int, int]:
    """Apply a workload's own limits to the preset's (warm-up, measured) rounds.

    An explicit ``--runs`` is obeyed as given; otherwise ``wl.max_runs`` caps it.
    """
    if not wl.warmup:
        warmup = 0
    cap = wl.max_runs.get(wl.ctx.preset)
    if cap is not None and not explicit:
        runs = min(runs, cap)
    return warmup, runs


def run_workload(
    wl: Workload,
    targets: Sequence[Target],
    warmup: int,
    runs: int,
    progress: ProgressSink,
    notes: dict[str, str] | None = None,
) -> list[Result]:
    """Measure one workload on every target, interleaving targets round-robin.

    Args:
        wl: the workload (already sized for the preset).
        targets: the columns, ``native`` first.
        warmup: unmeasured rounds first.
        runs: measured rounds.
        progress: where to report steps.
        notes: column -> why it is missing (gets an empty result row).

    Returns:
        One result per metric and column (columns in ``notes`` included).
    """
    metrics: list[Metric] = wl.metrics()
    samples: dict[str, dict[str, list[float]]] = {m.name: {} for m in metrics}
    failed: dict[str, str] = dict(notes or {})
    for m in metrics:
        for t in targets:
            samples[m.name][t.name] = []
        for name in failed:
            samples[m.name].setdefault(name, [])

    def attempt(t: Target, what: str, fn: Callable[[], Any]) -> Any:
        progress.step(wl.name, t.name, what)
        try:
            return fn()
        except (errors.LayerfsError, OSError, RuntimeError, ValueError) as exc:
            failed[t.name] = f"{what} failed: {type(exc).__name__}: {exc}"
            progress.log(f"{wl.name} on {t.name}: {failed[t.name]}")
            return None

    not_for = {t.name: why for t in targets if (why := wl.not_for(t)) is not None}
    failed.update(not_for)
    for t in targets:
        if t.name not in not_for:
            attempt(t, "setup", functools.partial(wl.setup, t))
    live = [t for t in targets if t.name not in failed]
    for r in range(warmup + runs):
        k = r % len(live) if live else 0
        for t in live[k:] + live[:k]:
            if t.name in failed:
                continue
            label = "warm-up" if r < warmup else f"run {r - warmup + 1}/{runs}"
            values = attempt(t, label, functools.partial(wl.run, t))
            if values is None or r < warmup:
                continue
            for m in metrics:
                if m.name in values:
                    samples[m.name][t.name].append(float(values[m.name]))
    for t in targets:
        if t.name in not_for:
            continue
        progress.step(wl.name, t.name, "teardown")
        try:
            wl.teardown(t)
        except (errors.LayerfsError, OSError) as exc:
            progress.log(f"{wl.name} teardown on {t.name}: {exc}")
    results: list[Result] = []
    for m in metrics:
        for res in summarize(wl.name, m, samples[m.name], failed):
            if res.driver in not_for:
                res = dataclasses.replace(res, applies=False)
            elif res.runs == 0 and not res.note:
                res = dataclasses.replace(res, note="no figure")
            results.append(res)
    return results


def run_bench(
    cfg: RunConfig,
    progress: ProgressSink | None = None,
    drop: Callable[[], None] = drop_caches,
) -> BenchReport:
    """Run the bench as ``cfg`` says; undo everything it made, however it ends.

    Raises:
        errors.FailedPrecondition: not root.
        errors.InvalidArgument: an unknown workload, column or filesystem.
        KeyboardInterrupt: Ctrl-C, SIGTERM or SIGHUP (after cleaning up).
    """
    progress = progress or NoProgress()
    why = need_root()
    if why:
        raise errors.FailedPrecondition(why)
    workloads = [load_workload(name) for name in cfg.workloads]
    specs = [cols.spec(name) for name in cfg.columns]
    if not specs or specs[0].name != cols.COLUMNS[0].name:
        specs = [cols.COLUMNS[0], *[s for s in specs if s.name != "native"]]
    warmup, runs = rounds(cfg.preset, cfg.runs)
    parent = Path(cfg.scratch) if cfg.scratch else Path("/var/tmp")
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="layerfs-bench-", dir=parent))
    cleanup = Cleanup(workdir)
    machine = machine_facts(cfg.fstype)
    machine.update(preset=cfg.preset, warmup_rounds=warmup, runs=runs, scratch=str(workdir))
    missing: dict[str, str] = {}
    titles: dict[str, str] = {}
    results: list[Result] = []
    # Keep helpers' temporary files (driver probes) inside the scratch dir too.
    saved_tempdir = tempfile.tempdir
    tempfile.tempdir = str(workdir)
    with interrupt_on_signals():
        try:
            drivers = cols.driver_reasons(workdir)
            targets: list[Target] = []
            fss: dict[str, ScratchFs] = {}
            for c in specs:
                reason = cols.missing_reason(c, drivers)
                if reason is None:
                    try:
                        fs = make_scratch_fs(
                            cleanup,
                            workdir,
                            c.name,
                            cfg.fstype,
                            IMAGE_SIZE[cfg.preset],
                            cfg.direct_io,
                        )
                        fss[c.name] = fs
                        targets.append(cols.build(c, fs, cleanup))
                    except (errors.LayerfsError, OSError) as exc:
                        reason = f"could not set up: {exc}"
                if reason is not None:
                    if c.name == "native":
                        raise errors.Unsupported(f"the native column cannot run: {reason}")
                    missing[c.name] = reason
                    progress.log(f"{c.name}: missing ({reason})")
            machine["loop_direct_io"] = all(fs.direct_io for fs in fss.values())
            machine["columns"] = {
                t.name: {"about": cols.spec(t.name).about, **_jsonable(t.facts())} for t in targets
            }
            machine["missing"] = missing
            machine["fuse_passthrough"] = _passthrough(machine["columns"])
            ctx = Context(cfg.preset, workdir / "inputs", drop)
            ctx.workdir.mkdir()
            steps = sum(
                len(targets)
                * (2 + sum(workload_rounds(cls(ctx), warmup, runs, cfg.runs is not None)))
                for cls in workloads
            )
            progress.start(steps)
            seconds: dict[str, float] = {}
            machine["workload_seconds"] = seconds
            for cls in workloads:
                wl = cls(ctx)
                titles[wl.name] = wl.title
                started = time.monotonic()
                w, r = workload_rounds(wl, warmup, runs, explicit=cfg.runs is not None)
                results += run_workload(wl, targets, w, r, progress, missing)
                seconds[wl.name] = round(time.monotonic() - started, 1)
        finally:
            tempfile.tempdir = saved_tempdir
            problems = cleanup.run_all()
            if problems:
                progress.log("cleanup problems: " + "; ".join(problems))
            if not mounts_below(workdir):
                shutil.rmtree(workdir, ignore_errors=True)
    return BenchReport(machine, results, titles)


def _passthrough(columns: dict[str, Any]) -> str:
    """Say how the fuse columns move file data (the driver's ``data_mode`` when it has one)."""
    parts: list[str] = []
    for name in ("fuse", "fuse-nopt"):
        facts = columns.get(name)
        if not facts:
            continue
        inner = facts.get("driver_status")
        flat = {**facts, **(inner if isinstance(inner, dict) else {})}
        mode = flat.get("data_mode")
        if mode is None:
            mode = next((v for k, v in flat.items() if "passthrough" in k), "unknown")
        parts.append(f"{name}: {mode}")
    if not parts:
        offered = "offered" if cols.fuse_passthrough_offered() else "not offered"
        return f"{offered} by the kernel (no fuse column)"
    return ", ".join(parts)


def _jsonable(facts: dict[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in facts.items():
        if isinstance(v, str | int | float | bool) or v is None:
            out[k] = v
        elif isinstance(v, dict | list | tuple):
            out[k] = v if _plain(v) else str(v)
        else:
            out[k] = str(v)
    return out


def _plain(v: object) -> bool:
    import json

    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False
