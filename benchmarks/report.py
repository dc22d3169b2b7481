"""Showing results: rich tables per workload, the machine's facts, and run-to-run changes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from layerfs import errors

from .runner import BenchReport
from .stats import NATIVE, Result, drivers_of


def fmt(value: float | None) -> str:
    """Format a figure with about three significant digits (``—`` when missing)."""
    if value is None or math.isnan(value):
        return "—"
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 100:
        return f"{value:.0f}"
    if a >= 10:
        return f"{value:.1f}"
    if a >= 1:
        return f"{value:.2f}"
    if a == 0:
        return "0"
    return f"{value:.3g}"


def fmt_ratio(r: float | None) -> str:
    """Format a ratio to native (``×1.23``), or an empty string."""
    if r is None:
        return ""
    return f"×{r:.2f}" if r < 100 else f"×{r:,.0f}"


def _best(results: list[Result]) -> str | None:
    """The non-native column with the best median in one metric's row."""
    cands = [r for r in results if r.driver != NATIVE and r.median is not None]
    if len(cands) < 2:
        return None
    pick = max if cands[0].higher_is_better else min
    return pick(cands, key=lambda r: r.median or 0.0).driver


def workload_tables(report: BenchReport) -> list[Table]:
    """Return one table per workload: metrics as rows, columns as drivers, with ratios.

    The table's title is the workload's name; ``report.titles`` has the
    line saying what it measures (``print_report`` prints it above).
    """
    drivers = drivers_of(report.results)
    tables: list[Table] = []
    by_workload: dict[str, list[Result]] = {}
    for r in report.results:
        by_workload.setdefault(r.workload, []).append(r)
    for workload, results in by_workload.items():
        title = f"[bold]{workload}[/]"
        present = [d for d in drivers if any(r.driver == d for r in results)]
        table = Table(title=title, title_justify="left", show_lines=False)
        table.add_column("metric", no_wrap=True)
        for d in present:
            table.add_column(d, justify="right")
        rows: dict[str, list[Result]] = {}
        for r in results:
            rows.setdefault(r.metric, []).append(r)
        for metric, row in rows.items():
            cells = {r.driver: r for r in row}
            best = _best(row)
            line = [f"{metric} ({row[0].unit})"]
            for d in present:
                cell = cells.get(d)
                if cell is None or cell.median is None:
                    failed = cell is not None and "failed" in cell.note
                    line.append("[dim]failed[/]" if failed else "—")
                    continue
                text = fmt(cell.median)
                ratio = fmt_ratio(cell.ratio_to_native) if d != NATIVE else ""
                if ratio:
                    text += f" [dim]{ratio}[/]"
                if d == best:
                    text = f"[bold green]{text}[/]"
                line.append(text)
            table.add_row(*line)
        notes = sorted({f"{r.driver}: {r.note}" for r in results if r.note and r.median is None})
        if notes:
            table.caption = "\n".join(notes)
            table.caption_justify = "left"
        tables.append(table)
    return tables


def machine_table(machine: dict[str, Any]) -> Table:
    """Return the machine's facts as a two-column table."""
    table = Table(title="[bold]machine[/]", title_justify="left", show_header=False)
    table.add_column("fact", style="cyan", no_wrap=True)
    table.add_column("value")
    keys = [
        ("kernel", "kernel"),
        ("cpu", "CPU"),
        ("cpus", "cores"),
        ("memory_gib", "memory (GiB)"),
        ("fs", "filesystem"),
        ("loop_direct_io", "loop direct I/O"),
        ("fuse_passthrough", "FUSE passthrough"),
        ("preset", "preset"),
        ("runs", "measured runs"),
        ("warmup_rounds", "warm-up runs"),
    ]
    for key, label in keys:
        if key in machine:
            table.add_row(label, str(machine[key]))
    for name, why in (machine.get("missing") or {}).items():
        table.add_row(f"missing: {name}", str(why))
    return table


def print_report(report: BenchReport, console: Console | None = None) -> None:
    """Print the machine's facts and every workload's table."""
    console = console or Console()
    console.print(machine_table(report.machine))
    for table in workload_tables(report):
        console.print()
        name = str(table.title).replace("[bold]", "").replace("[/]", "")
        console.print(f"[bold]{name}[/]: {report.titles.get(name, '')}")
        table.title = None
        console.print(table)
    console.print(
        "\n[dim]Median of the runs; ×N = ratio to native measured in the same run; "
        "green = best non-native column.[/]"
    )


def write_json(report: BenchReport, path: Path) -> None:
    """Write the report as JSON to ``path``."""
    path.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path) -> BenchReport:
    """Read a report written by ``write_json``.

    Raises:
        errors.NotFound: no such file.
        errors.InvalidArgument: not a bench result file.
    """
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise errors.NotFound(f"{path}: no such file; give a file written by --json") from None
    except (OSError, ValueError) as exc:
        raise errors.InvalidArgument(f"{path}: not a JSON bench result ({exc})") from exc
    if not isinstance(data, dict):
        raise errors.InvalidArgument(
            f"{path}: not a JSON bench result (top level is not an object)"
        )
    return BenchReport.from_json(data)


def changes(old: BenchReport, new: BenchReport) -> list[dict[str, Any]]:
    """Pair the figures of two runs and compute the change of each median.

    Returns:
        One record per (workload, driver, metric) present in both runs with
        a median in both: ``old``, ``new``, ``change`` (new/old - 1) and
        ``better`` (True when the change is an improvement).
    """
    index = {(r.workload, r.driver, r.metric): r for r in old.results}
    out: list[dict[str, Any]] = []
    for r in new.results:
        o = index.get((r.workload, r.driver, r.metric))
        if o is None or o.median is None or r.median is None:
            continue
        change = None if o.median == 0 else r.median / o.median - 1
        better = None
        if change is not None and change != 0:
            better = (change > 0) == r.higher_is_better
        out.append(
            {
                "workload": r.workload,
                "driver": r.driver,
                "metric": r.metric,
                "unit": r.unit,
                "old": o.median,
                "new": r.median,
                "change": change,
                "better": better,
            }
        )
    return out


def compare_table(old: BenchReport, new: BenchReport, names: Iterable[str] = ("A", "B")) -> Table:
    """Return a table of the change of every figure between two runs."""
    a, b = list(names)
    table = Table(title=f"[bold]change from {a} to {b}[/]", title_justify="left")
    for col in ("workload", "metric", "driver", a, b, "change"):
        table.add_column(col, justify="right" if col in (a, b, "change") else "left")
    for c in changes(old, new):
        pct = "—" if c["change"] is None else f"{c['change'] * 100:+.1f}%"
        if c["better"] is True:
            pct = f"[green]{pct}[/]"
        elif c["better"] is False:
            pct = f"[red]{pct}[/]"
        table.add_row(
            c["workload"],
            f"{c['metric']} ({c['unit']})",
            c["driver"],
            fmt(c["old"]),
            fmt(c["new"]),
            pct,
        )
    return table
