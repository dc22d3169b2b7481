"""What a bench report says, and how it is printed: tables, markdown or CSV.

Per workload, a grid of medians (metrics as rows, drivers as columns) with
a ratio under each figure; then the machine's facts and a legend. Ratios
divide by native, measured in the same run, except in rows whose metric
names the ``best`` baseline (work native does not do, such as making a
snapshot): there they divide by the row's best driver, and the table's
note says so. Drivers with no figure in a workload are left out of its
table; the note under it says why.

``print_report`` prints in one of ``FORMATS``: ``table`` (boxed on a
terminal, plain text in a pipe, laid out so that no figure is ever cut),
``markdown`` (for tickets) or ``csv`` (one line per figure, full precision).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console

from layerfs import errors

from .layout import MISSING, Cell, Grid, fact_lines
from .render import boxed, draw, emit, markdown_table, say
from .runner import BenchReport
from .stats import BEST, NATIVE, Result, drivers_of

FORMATS = ("table", "markdown", "csv")


def fmt(value: float | None) -> str:
    """Format a figure with about three significant digits (``—`` when missing)."""
    if value is None or math.isnan(value):
        return MISSING
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
    """Format a ratio (``×0.93``, ``×74.6``, ``×1,094``), or an empty string."""
    if r is None or math.isnan(r):
        return ""
    if r < 10:
        return f"×{r:.2f}"
    if r < 100:
        return f"×{r:.1f}"
    return f"×{r:,.0f}"


def _candidates(row: list[Result]) -> list[Result]:
    return [r for r in row if r.driver != NATIVE and r.median is not None]


def best_driver(row: list[Result]) -> str | None:
    """The driver with the best median of one metric's row (native not counted).

    None when fewer than two drivers have a figure: one is nobody's best.
    """
    cands = _candidates(row)
    if len(cands) < 2:
        return None
    pick = max if cands[0].higher_is_better else min
    return pick(cands, key=lambda r: r.median or 0.0).driver


def shown_ratio(result: Result, row: list[Result]) -> float | None:
    """The ratio the report shows under ``result``: to native, or to the row's best driver.

    None for native itself, for a missing figure, and where the baseline is
    missing or zero.
    """
    if result.driver == NATIVE or result.median is None:
        return None
    if result.baseline != BEST:
        return result.ratio_to_native
    cands = _candidates(row)
    pick = max if result.higher_is_better else min
    base = pick((r.median or 0.0 for r in cands), default=0.0)
    return result.median / base if base else None


@dataclasses.dataclass
class WorkloadView:
    """One workload's table.

    Attributes:
        name: the workload.
        title: what it measures.
        grid: metrics as rows, drivers with a figure as columns.
        notes: why drivers are missing or failed, and what the ratios divide by.
    """

    name: str
    title: str
    grid: Grid
    notes: list[str]


def _by_workload(results: list[Result]) -> dict[str, list[Result]]:
    out: dict[str, list[Result]] = {}
    for r in results:
        out.setdefault(r.workload, []).append(r)
    return out


def _rows(results: list[Result]) -> dict[str, list[Result]]:
    rows: dict[str, list[Result]] = {}
    for r in results:
        rows.setdefault(r.metric, []).append(r)
    return rows


def _cell(result: Result | None, row: list[Result], best: str | None) -> Cell:
    if result is None or result.median is None:
        failed = result is not None and "failed" in result.note
        return Cell(("failed" if failed else MISSING,), "dim")
    ratio = fmt_ratio(shown_ratio(result, row))
    lines = (fmt(result.median), ratio) if ratio else (fmt(result.median),)
    return Cell(lines, "best" if result.driver == best else "")


def workload_views(report: BenchReport) -> list[WorkloadView]:
    """Return one view per workload, in the order the run made them."""
    drivers = drivers_of(report.results)
    views = []
    for workload, results in _by_workload(report.results).items():
        rows = _rows(results)
        shown = [
            d
            for d in drivers
            if any(r.driver == d and (r.median is not None or "failed" in r.note) for r in results)
        ]
        labels, cells, to_best = [], [], []
        for metric, row in rows.items():
            label = f"{metric} ({row[0].unit})"
            by_driver = {r.driver: r for r in row}
            best = best_driver(row)
            labels.append(label)
            cells.append([_cell(by_driver.get(d), row, best) for d in shown])
            if row[0].baseline == BEST:
                to_best.append(metric)
        notes = sorted({f"{r.driver}: {r.note}" for r in results if r.note and r.median is None})
        if to_best:
            where = "here" if len(to_best) == len(rows) else "in rows " + ", ".join(to_best)
            notes.append(
                f"×N {where} divides by the best driver of the row, not by native: native "
                "does not do this work, so a ratio to it would say nothing."
            )
        grid = Grid("metric", shown, labels, cells, corner_transposed="driver")
        views.append(WorkloadView(workload, report.titles.get(workload, ""), grid, notes))
    return views


def machine_facts(machine: dict[str, Any]) -> list[tuple[str, str]]:
    """Return the machine's facts worth printing, as (label, value) pairs."""
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
    facts = [(label, str(machine[key])) for key, label in keys if key in machine]
    facts += [
        (f"missing: {name}", str(why)) for name, why in (machine.get("missing") or {}).items()
    ]
    return facts


def legend(report: BenchReport, form: str, colour: bool) -> str:
    """Return the legend printed under the tables (``colour``: the best figure is green)."""
    runs = report.machine.get("runs")
    best = "bold" if form == "markdown" else "green" if colour else "*"
    return (
        f"Each figure is the median of {runs or 'the'} runs; under it, ×N is its ratio to "
        "native (the same work on a plain directory, measured in the same run), except "
        "where a table's note says it divides by the row's best driver. "
        f"{best.capitalize()}: the best driver of the row (native not counted). "
        f"{MISSING}: no figure (the note under the table says why)."
    )


def print_report(report: BenchReport, console: Console, form: str = "table") -> None:
    """Print the machine's facts, every workload's table and the legend in ``form``.

    Args:
        report: the run's results.
        console: where to print; in ``table`` form, a terminal gets boxed
            tables and anything else plain text, both in ``console.width``.
        form: one of ``FORMATS``.
    """
    if form == "csv":
        console.file.write(report_csv(report))
        return
    if form == "markdown":
        emit(console, report_markdown(report))
        return
    facts = machine_facts(report.machine)
    say(console, "machine", "bold")
    emit(console, ["  " + line for line in fact_lines(facts, console.width - 2)])
    for view in workload_views(report):
        emit(console, [""])
        say(console, f"{view.name}: {view.title}", "bold")
        if view.grid.headers:
            draw(console, view.grid)
        for note in view.notes:
            say(console, note, "dim")
    emit(console, [""])
    say(console, legend(report, form, boxed(console)), "dim")


def report_markdown(report: BenchReport) -> list[str]:
    """Return the report as markdown: a table per workload, then the machine and legend."""
    out: list[str] = []
    for view in workload_views(report):
        out += [f"### {view.name}", "", view.title, ""]
        if view.grid.headers:
            out += markdown_table(view.grid) + [""]
        out += [f"{note}  " for note in view.notes]
        if view.notes:
            out.append("")
    facts = Grid("machine", ["value"], [], [])
    for label, value in machine_facts(report.machine):
        facts.labels.append(label)
        facts.cells.append([Cell((value,))])
    out += ["### machine", ""] + markdown_table(facts) + [""]
    out.append(legend(report, "markdown", colour=False))
    return out


CSV_FIELDS = (
    "workload",
    "metric",
    "unit",
    "driver",
    "median",
    "min",
    "max",
    "runs",
    "ratio",
    "ratio_to",
    "best",
    "note",
)


def _num(value: float | None) -> str:
    """A float in full (``repr``), so that it reads back exactly; empty when missing."""
    return "" if value is None else repr(value)


def report_csv(report: BenchReport) -> str:
    """Return the report as CSV: a header, then one line per (workload, metric, driver).

    ``ratio`` is the ratio the tables show and ``ratio_to`` what it divides
    by (``native`` or ``best``); ``best`` is ``yes`` on the best driver of
    its row.
    """
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for workload_results in _by_workload(report.results).values():
        for row in _rows(workload_results).values():
            best = best_driver(row)
            for r in row:
                ratio = shown_ratio(r, row)
                base = "" if ratio is None else r.baseline
                w.writerow(
                    [
                        r.workload,
                        r.metric,
                        r.unit,
                        r.driver,
                        _num(r.median),
                        _num(r.min),
                        _num(r.max),
                        r.runs,
                        _num(ratio),
                        base,
                        "yes" if r.driver == best else "",
                        r.note,
                    ]
                )
    return buf.getvalue()


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


def compare_grid(old: BenchReport, new: BenchReport) -> Grid:
    """Return a grid of every figure in both runs: A, B and the change, one row each."""
    labels, cells = [], []
    for c in changes(old, new):
        labels.append(f"{c['workload']}, {c['metric']} ({c['unit']}), {c['driver']}")
        pct = MISSING if c["change"] is None else f"{c['change'] * 100:+.1f}%"
        tone = {True: "good", False: "bad"}.get(c["better"], "")
        cells.append([Cell((fmt(c["old"]),)), Cell((fmt(c["new"]),)), Cell((pct,), tone)])
    return Grid("figure", ["A", "B", "change"], labels, cells, transposable=False)


def compare_csv(old: BenchReport, new: BenchReport) -> str:
    """Return the change of every figure as CSV (``change`` is new/old - 1)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    fields = ("workload", "metric", "unit", "driver", "old", "new", "change")
    w.writerow(fields)
    for c in changes(old, new):
        w.writerow(
            [c[f] if f in ("workload", "metric", "unit", "driver") else _num(c[f]) for f in fields]
        )
    return buf.getvalue()


def print_compare(
    old: BenchReport,
    new: BenchReport,
    names: Iterable[str],
    console: Console,
    form: str = "table",
) -> None:
    """Print the change of every figure from run A (``old``) to run B (``new``) in ``form``."""
    if form == "csv":
        console.file.write(compare_csv(old, new))
        return
    a, b = list(names)
    heading = f"change from A ({a}) to B ({b})"
    if form == "markdown":
        emit(console, [f"### {heading}", "", *markdown_table(compare_grid(old, new))])
        return
    say(console, heading, "bold")
    draw(console, compare_grid(old, new))
