"""JSON shape, --compare, tables and the PNG chart of the bench."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from layerfs.benchmarks import cli
from layerfs.benchmarks.plot import needs_log, plot
from layerfs.benchmarks.report import changes, print_report, read_json, write_json
from layerfs.benchmarks.runner import BenchReport
from layerfs.benchmarks.stats import Metric, summarize
from rich.console import Console

from layerfs import errors

KEYS = {"workload", "driver", "metric", "unit", "median", "min", "max", "runs", "ratio_to_native"}


def make_report(scale: float = 1.0) -> BenchReport:
    results = summarize(
        "read",
        Metric("seq warm", "GB/s", higher_is_better=True),
        {"native": [2.0, 2.2], "overlay": [1.9 * scale, 2.1 * scale], "fuse": []},
        {"fuse": "kernel has no FUSE"},
    )
    results += summarize(
        "prepare",
        Metric("chain 1", "ms"),
        {"native": [0.01], "overlay": [4.0 * scale], "fuse": []},
        {"fuse": "kernel has no FUSE"},
    )
    machine = {"kernel": "6.1", "cpu": "test cpu", "fs": "ext4", "loop_direct_io": True}
    return BenchReport(machine, results, {"read": "reads", "prepare": "prepares"})


def test_json_has_the_documented_shape(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json(make_report(), path)
    data = json.loads(path.read_text())
    assert set(data) >= {"machine", "results"}
    assert data["machine"]["kernel"] == "6.1"
    assert len(data["results"]) == 6
    for rec in data["results"]:
        assert KEYS <= set(rec)
    overlay = next(
        r for r in data["results"] if r["driver"] == "overlay" and r["workload"] == "read"
    )
    assert overlay["median"] == pytest.approx(2.0)
    assert overlay["ratio_to_native"] == pytest.approx(2.0 / 2.1)
    assert overlay["runs"] == 2


def test_json_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    report = make_report()
    write_json(report, path)
    back = read_json(path)
    assert back.results == report.results
    assert back.machine == report.machine


def test_read_json_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"something": 1}')
    with pytest.raises(errors.InvalidArgument, match="bench result"):
        read_json(bad)
    with pytest.raises(errors.NotFound):
        read_json(tmp_path / "missing.json")


def test_changes_pairs_figures_and_knows_better_from_worse() -> None:
    old, new = make_report(1.0), make_report(2.0)
    out = {(c["workload"], c["driver"]): c for c in changes(old, new)}
    read = out[("read", "overlay")]
    assert read["change"] == pytest.approx(1.0)
    assert read["better"] is True  # GB/s doubled
    prep = out[("prepare", "overlay")]
    assert prep["change"] == pytest.approx(1.0)
    assert prep["better"] is False  # ms doubled
    assert ("read", "fuse") not in out  # no figure in either run
    assert out[("read", "native")]["better"] is None  # unchanged


def test_compare_command_prints_the_change(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(make_report(1.0), a)
    write_json(make_report(2.0), b)
    assert cli.main(["--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "+100.0%" in out
    assert "overlay" in out


def test_compare_command_with_a_bad_file_is_a_usage_error(tmp_path: Path) -> None:
    a = tmp_path / "a.json"
    a.write_text("not json")
    assert cli.main(["--compare", str(a), str(a)]) == 2


def test_tables_show_ratios_and_missing_columns() -> None:
    out = io.StringIO()
    print_report(make_report(), Console(file=out, width=200))
    text = out.getvalue()
    assert "×0.95" in text  # overlay 2.0 / native 2.1
    assert "fuse: kernel has no FUSE" in text
    assert "6.1" in text and "loop direct I/O" in text


def test_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "r.png"
    report = make_report()
    plot(report.results, path, report.titles, report.machine)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


def test_log_scale_only_when_the_spread_needs_it() -> None:
    assert needs_log([0.01, 4.0])
    assert not needs_log([1.0, 2.0, 3.0])
    assert not needs_log([0.0, 5.0])
