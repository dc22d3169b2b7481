"""The bench's tables at any width: every figure whole, markdown and CSV that read back."""

from __future__ import annotations

import csv
import io
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from layerfs.benchmarks.layout import PLAIN, Cell, Grid, arrange, fit, plain_lines, record_lines
from layerfs.benchmarks.report import (
    FORMATS,
    fmt,
    fmt_ratio,
    print_compare,
    print_report,
    shown_ratio,
    write_json,
)
from layerfs.benchmarks.runner import BenchReport
from layerfs.benchmarks.stats import BEST, NATIVE, Metric, Result, summarize
from rich.console import Console

DRIVERS = ("native", "copy", "overlay", "fuse", "fuse-nopt", "fuse-overlayfs", "devmapper")
NO_DM = {"devmapper": "the kernel has no device-mapper (/dev/mapper/control is missing)"}
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def samples(*values: float) -> dict[str, list[float]]:
    """One column per driver but devmapper (missing), two runs each around ``values``."""
    return {d: [v * 0.99, v * 1.01] for d, v in zip(DRIVERS, values, strict=False)} | {
        "devmapper": []
    }


def wide_report() -> BenchReport:
    """Figures shaped like a real quick run: big IOPS, tiny natives, a failed column."""
    results: list[Result] = []
    for depth, values in (
        (1, (0.0125, 0.936, 5.74, 116, 119, 13.7)),
        (8, (0.0017, 1.17, 11.4, 114, 137, 8.9)),
    ):
        results += summarize(
            "prepare", Metric(f"chain {depth}", "ms", baseline=BEST), samples(*values), NO_DM
        )
    for name, values in (
        ("seq cold", (2.66, 2.07, 2.55, 2.48, 1.57, 1.91)),
        ("rand 4K warm", (861936, 795230, 688975, 828833, 720946, 639782)),
    ):
        unit = "GB/s" if name.startswith("seq") else "IOPS"
        results += summarize(
            "read", Metric(name, unit, higher_is_better=True), samples(*values), NO_DM
        )
    for name in ("create p50", "create p99"):
        results += summarize(
            "scale",
            Metric(name, "ms", baseline=BEST),
            samples(0.00048, 2.37, 0.676, 0.711, 0.74, 0.679),
            NO_DM,
        )
    results += summarize(
        "density",
        Metric("per extra, 3", "MiB", ratio=False),
        samples(1.28, 8.18, -0.0123, 0.193, 8.84, 8.53),
        NO_DM,
    )
    notes = NO_DM | {"fuse": "failed: Busy: target is busy"}
    space = samples(0.0, 4100, 16, 16, 16, 16)
    space["fuse"] = []
    results += summarize("space", Metric("empty snapshot", "KiB"), space, notes)
    machine = {
        "kernel": "6.18.44-fc-v669",
        "cpu": "AMD EPYC",
        "runs": 2,
        "fuse_passthrough": "fuse: passthrough, fuse-nopt: writeback-cache",
        "missing": NO_DM,
    }
    titles = {
        w: f"what {w} measures, in a sentence long enough to wrap"
        for w in ("prepare", "read", "scale", "density", "space")
    }
    return BenchReport(machine, results, titles)


def rows_of(report: BenchReport) -> dict[tuple[str, str], list[Result]]:
    rows: dict[tuple[str, str], list[Result]] = {}
    for r in report.results:
        rows.setdefault((r.workload, r.metric), []).append(r)
    return rows


def expected_tokens(report: BenchReport) -> Counter[str]:
    """Every figure and ratio the tables must show, with how often each appears."""
    want: Counter[str] = Counter()
    for row in rows_of(report).values():
        for r in row:
            if r.median is None:
                continue
            want[fmt(r.median)] += 1
            ratio = fmt_ratio(shown_ratio(r, row))
            if ratio:
                want[ratio] += 1
    return want


def whole_count(text: str, token: str) -> int:
    """How often ``token`` appears with no digit, point or comma glued to either side."""
    pattern = r"(?<![\d.,×\-])" + re.escape(token) + r"(?![\d,]|\.\d)"
    return len(re.findall(pattern, text))


def render(report: BenchReport, width: int, terminal: bool, form: str = "table") -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, color_system="standard")
    print_report(report, console, form)
    return ANSI.sub("", out.getvalue())


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "piped"])
@pytest.mark.parametrize("width", [40, 80, 200])
def test_every_figure_is_whole_at_any_width(width: int, terminal: bool) -> None:
    report = wide_report()
    text = render(report, width, terminal)
    assert ("┏" in text) == terminal  # boxed on a terminal, plain text in a pipe
    assert "…" not in text
    for line in text.splitlines():
        assert len(line) <= width, line
    for token, count in expected_tokens(report).items():
        assert whole_count(text, token) >= count, f"{token} cut or missing at {width}"


def test_the_wide_table_keeps_drivers_as_columns_and_a_narrow_one_transposes() -> None:
    report = wide_report()
    wide = render(report, 200, terminal=False)
    header = next(line for line in wide.splitlines() if line.startswith("metric"))
    assert header.split() == [
        "metric",
        "native",
        "copy",
        "overlay",
        "fuse",
        "fuse-nopt",
        "fuse-overlayfs",
    ]
    narrow = render(report, 40, terminal=False)
    assert any(line.startswith("driver") for line in narrow.splitlines())
    assert "devmapper  " not in narrow  # a driver without figures gets no column, only its note
    assert "devmapper: the kernel has no device-mapper" in wide


def test_prepare_and_scale_divide_by_the_best_driver() -> None:
    report = wide_report()
    row = rows_of(report)[("prepare", "chain 1")]
    by = {r.driver: r for r in row}
    assert shown_ratio(by["copy"], row) == pytest.approx(1.0)
    assert shown_ratio(by["overlay"], row) == pytest.approx(5.74 / 0.936)
    assert shown_ratio(by[NATIVE], row) is None
    read = rows_of(report)[("read", "seq cold")]
    fuse = next(r for r in read if r.driver == "fuse")
    assert shown_ratio(fuse, read) == pytest.approx(2.48 / 2.66)
    text = render(report, 200, terminal=False)
    assert "×41" not in text  # no 1,000-fold ratios to a native that does no work
    assert text.count("divides by the best driver of the row") == 2  # prepare and scale
    assert "*: the best driver of the row" in text


def test_markdown_reads_back_to_the_same_figures() -> None:
    report = wide_report()
    text = render(report, 40, terminal=False, form="markdown")
    tables: dict[str, list[list[str]]] = {}
    workload = ""
    for line in text.splitlines():
        if line.startswith("### "):
            workload = line[4:]
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            tables.setdefault(workload, []).append(cells)
    for (w, metric), row in rows_of(report).items():
        header, _rule, *body = tables[w]
        line = next(cells for cells in body if cells[0].startswith(f"{metric} ("))
        for r in row:
            if r.median is None:
                assert r.driver not in header or line[header.index(r.driver)] in ("—", "failed")
                continue
            parts = line[header.index(r.driver)].replace("**", "").split()
            assert parts[0] == fmt(r.median)
            ratio = fmt_ratio(shown_ratio(r, row))
            assert parts[1:] == ([ratio] if ratio else [])
    assert tables["machine"][2] == ["kernel", "6.18.44-fc-v669"]


def test_csv_reads_back_exactly() -> None:
    report = wide_report()
    rows = list(csv.DictReader(io.StringIO(render(report, 40, False, "csv"))))
    assert len(rows) == len(report.results)
    rows_by = rows_of(report)
    for rec, r in zip(rows, report.results, strict=True):
        assert (rec["workload"], rec["metric"], rec["driver"]) == (r.workload, r.metric, r.driver)
        assert (float(rec["median"]) if rec["median"] else None) == r.median
        ratio = shown_ratio(r, rows_by[(r.workload, r.metric)])
        assert (float(rec["ratio"]) if rec["ratio"] else None) == ratio
        assert rec["ratio_to"] == ("" if ratio is None else r.baseline)
    best = [rec["driver"] for rec in rows if rec["metric"] == "chain 1" and rec["best"] == "yes"]
    assert best == ["copy"]


def test_the_command_prints_a_saved_run_whole_when_piped(tmp_path: Path) -> None:
    report = wide_report()
    path = tmp_path / "r.json"
    write_json(report, path)
    for width in (40, 80, 200):
        for form in FORMATS:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "layerfs.benchmarks.cli",
                    "--show",
                    str(path),
                    "--format",
                    form,
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "COLUMNS": str(width)},
                timeout=60,
            )
            assert proc.returncode == 0, proc.stderr
            assert "\x1b[" not in proc.stdout
            if form == "csv":
                assert len(list(csv.DictReader(io.StringIO(proc.stdout)))) == len(report.results)
                continue
            for token, count in expected_tokens(report).items():
                assert whole_count(proc.stdout, token) >= count, (width, form, token)
            if form == "table":
                assert max(len(line) for line in proc.stdout.splitlines()) <= width


def test_compare_is_whole_at_40_columns() -> None:
    old, new = wide_report(), wide_report()
    new.results = [
        r if r.median is None else Result(**{**r.__dict__, "median": r.median * 2})
        for r in new.results
    ]
    for terminal in (True, False):
        out = io.StringIO()
        print_compare(
            old,
            new,
            ("before.json", "after.json"),
            Console(file=out, width=40, force_terminal=terminal, color_system="standard"),
        )
        text = ANSI.sub("", out.getvalue())
        assert whole_count(text, "1,723,872") == 1  # 861,936 doubled
        assert text.count("+100.0%") == sum(1 for r in old.results if r.median)
        assert max(len(line) for line in text.splitlines()) <= 40


def test_fit_never_narrows_a_column_below_its_widest_figure() -> None:
    grid = Grid(
        "metric",
        ["a-very-long-header", "b"],
        ["row label (unit)"],
        [[Cell(("123,456,789",)), Cell(("1",))]],
    )
    fitted = fit(grid, PLAIN, 30)
    assert fitted is not None
    assert fitted.widths[1] >= len("123,456,789") + PLAIN.gutter
    assert fit(grid, PLAIN, 20) is None  # the figure alone needs more
    assert arrange(grid, PLAIN, 12) is None
    lines = record_lines(grid)
    assert "  a-very-long-header  123,456,789" in lines
    assert all(len(line) <= 30 for line in plain_lines(fitted))


def test_a_terminal_without_colour_gets_plain_text_with_stars() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, no_color=True)
    print_report(wide_report(), console)
    text = ANSI.sub("", out.getvalue())
    assert "┏" not in text
    assert "0.936*" in text  # copy is the best driver of prepare's chain 1
    assert "*: the best driver of the row" in " ".join(text.split())
