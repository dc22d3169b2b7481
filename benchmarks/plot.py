"""The ``--plot`` chart: one panel of grouped bars per workload (matplotlib, Agg).

Each panel has the workload's metrics along x and one bar per column (the
median, with whiskers from the min to the max run).
Metrics of one workload can mix units; bars are drawn as measured and the
unit goes in the tick label. A panel switches to a log scale when its
largest positive figure is more than 20 times its smallest.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .stats import Result, drivers_of

LOG_SPREAD = 20.0


def needs_log(values: list[float]) -> bool:
    """True when the positive ``values`` spread over more than ``LOG_SPREAD``×."""
    pos = [v for v in values if v > 0]
    return len(pos) >= 2 and max(pos) / min(pos) > LOG_SPREAD


def plot(
    results: list[Result],
    path: Path,
    titles: dict[str, str] | None = None,
    machine: dict[str, Any] | None = None,
) -> None:
    """Write a PNG of grouped bar charts, one panel per workload, to ``path``.

    Args:
        results: the run's results.
        path: the PNG to write.
        titles: workload name -> what it measures (unused in panels, kept short).
        machine: the run's machine facts, summarised in a footer when given.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = titles or {}
    workloads = list(dict.fromkeys(r.workload for r in results))
    drivers = drivers_of(results)
    ncols = 2 if len(workloads) > 1 else 1
    nrows = max(1, math.ceil(len(workloads) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(7.5 * ncols, 3.6 * nrows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    colors = {d: cmap(i % 10) for i, d in enumerate(drivers)}
    handles: dict[str, Any] = {}
    for ax, workload in zip(axes.flat, workloads, strict=False):
        rows = [r for r in results if r.workload == workload]
        metrics = list(dict.fromkeys(r.metric for r in rows))
        units = {r.metric: r.unit for r in rows}
        present = [d for d in drivers if any(r.driver == d and r.median is not None for r in rows)]
        width = 0.8 / max(1, len(present))
        values: list[float] = []
        for j, d in enumerate(present):
            xs: list[float] = []
            hs: list[float] = []
            lo: list[float] = []
            hi: list[float] = []
            for i, m in enumerate(metrics):
                r = next((r for r in rows if r.driver == d and r.metric == m), None)
                if r is None or r.median is None or r.median <= 0:
                    continue
                xs.append(i - 0.4 + width * (j + 0.5))
                hs.append(r.median)
                # Whiskers from the slowest to the fastest run (clipped at 0 for log axes).
                lo.append(max(0.0, r.median - (r.min if r.min is not None else r.median)))
                hi.append(max(0.0, (r.max if r.max is not None else r.median) - r.median))
            values += hs
            bars = ax.bar(
                xs,
                hs,
                width=width,
                color=colors[d],
                label=d,
                yerr=[lo, hi],
                capsize=2,
                error_kw={"elinewidth": 0.8, "ecolor": "#333333"},
            )
            handles.setdefault(d, bars)
        if needs_log(values):
            ax.set_yscale("log")
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels([f"{m}\n({units[m]})" for m in metrics], fontsize=8)
        better = {r.higher_is_better for r in rows}
        hint = "mixed: rates higher, times lower is better"
        if len(better) == 1:
            hint = "higher is better" if better.pop() else "lower is better"
        ax.set_title(f"{workload} ({hint})", fontsize=10, loc="left")
        ax.grid(axis="y", alpha=0.3)
        ax.tick_params(axis="y", labelsize=8)
    for ax in list(axes.flat)[len(workloads) :]:
        ax.axis("off")
    ordered = [d for d in drivers if d in handles]
    fig.legend([handles[d] for d in ordered], ordered, loc="upper center", ncol=len(ordered))
    bottom = 0.0
    if machine:
        fig.text(0.01, 0.005, footer(machine), fontsize=8, va="bottom", color="#444444")
        bottom = 0.025
    fig.tight_layout(rect=(0, bottom, 1, 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def footer(machine: dict[str, Any]) -> str:
    """One line of the machine's facts, and the missing columns with their reasons."""
    parts = [
        f"kernel {machine.get('kernel', '?')}",
        f"{machine.get('cpus', '?')} × {machine.get('cpu', '?')}",
        f"fs {machine.get('fs', '?')}",
        f"loop direct I/O {machine.get('loop_direct_io', '?')}",
        f"FUSE data: {machine.get('fuse_passthrough', '?')}",
        f"preset {machine.get('preset', '?')}, median of {machine.get('runs', '?')}",
    ]
    missing = machine.get("missing") or {}
    if missing:
        parts.append("missing: " + "; ".join(f"{k} ({v})" for k, v in missing.items()))
    return " · ".join(parts)
