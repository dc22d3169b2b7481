"""The bench runner's rounds, interleaving and failure handling, with fake columns."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from layerfs.benchmarks import cli
from layerfs.benchmarks.runner import BenchReport, NoProgress, rounds, run_workload
from layerfs.benchmarks.stats import Metric
from layerfs.benchmarks.targets import Target
from layerfs.benchmarks.workload import Context, Workload


class FakeTarget(Target):
    """A column that only has a name (the fake workload never calls its verbs)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._made = []

    def prepare(self, key: str, parent: str | None = None) -> None: ...
    def view(self, key: str, parent: str) -> None: ...
    def mount(self, key: str) -> Path:
        return Path("/")

    def unmount(self, key: str) -> None: ...
    def commit(self, name: str, key: str) -> None: ...
    def remove(self, key: str) -> None: ...
    def apply(self, fileobj: Any, parent: str | None = None) -> str:
        return ""

    def export(self, name: str) -> Any:
        return iter(())


class Recording(Workload):
    name = "rec"
    title = "records calls"
    sizes = {"quick": {}, "default": {}, "full": {}}
    calls: list[tuple[str, str]]
    fail_on: str = ""
    not_on: str = ""

    def not_for(self, target: Target) -> str | None:
        return "does not apply here" if target.name == self.not_on else None

    def metrics(self) -> list[Metric]:
        return [Metric("t", "ms")]

    def setup(self, target: Target) -> None:
        self.calls.append(("setup", target.name))
        if target.name == self.fail_on:
            raise OSError("no space left")

    def run(self, target: Target) -> dict[str, float]:
        self.calls.append(("run", target.name))
        n = sum(1 for c in self.calls if c == ("run", target.name))
        return {"t": {"native": 1.0, "a": 2.0, "b": 3.0}[target.name] * n}

    def teardown(self, target: Target) -> None:
        self.calls.append(("teardown", target.name))


def make(tmp_path: Path, fail_on: str = "") -> Recording:
    wl = Recording(Context("quick", tmp_path, drop_caches=lambda: None))
    wl.calls = []
    wl.fail_on = fail_on
    return wl


def test_rounds_are_interleaved_and_warm_up_is_not_counted(tmp_path: Path) -> None:
    wl = make(tmp_path)
    targets = [FakeTarget("native"), FakeTarget("a"), FakeTarget("b")]
    results = run_workload(wl, targets, warmup=1, runs=3, progress=NoProgress())
    runs = [name for what, name in wl.calls if what == "run"]
    # Each round visits every column; the starting column moves on each round.
    assert runs == ["native", "a", "b", "a", "b", "native", "b", "native", "a", "native", "a", "b"]
    by = {r.driver: r for r in results}
    # The warm-up (value x1) is dropped: measured values are x2, x3, x4.
    assert by["a"].runs == 3
    assert (by["a"].min, by["a"].median, by["a"].max) == (4.0, 6.0, 8.0)
    assert by["a"].ratio_to_native == pytest.approx(2.0)
    assert wl.calls[-3:] == [("teardown", "native"), ("teardown", "a"), ("teardown", "b")]


def test_a_failing_column_gets_a_note_and_the_others_go_on(tmp_path: Path) -> None:
    wl = make(tmp_path, fail_on="a")
    targets = [FakeTarget("native"), FakeTarget("a"), FakeTarget("b")]
    results = run_workload(
        wl, targets, warmup=0, runs=2, progress=NoProgress(), notes={"zz": "not installed"}
    )
    by = {r.driver: r for r in results}
    assert by["a"].median is None and "no space left" in by["a"].note
    assert by["b"].runs == 2
    assert by["zz"].median is None and by["zz"].note == "not installed"
    assert ("run", "a") not in wl.calls


def test_a_failed_column_marks_the_report_but_a_missing_one_does_not(tmp_path: Path) -> None:
    wl = make(tmp_path, fail_on="a")
    targets = [FakeTarget("native"), FakeTarget("a"), FakeTarget("b")]
    results = run_workload(
        wl, targets, warmup=0, runs=1, progress=NoProgress(), notes={"zz": "not installed"}
    )
    report = BenchReport(machine={"missing": {"zz": "not installed"}}, results=results)
    assert report.failed_columns() == ["a"]
    whole = [r for r in results if r.driver != "a"]
    assert BenchReport(machine={"missing": {"zz": "x"}}, results=whole).failed_columns() == []


def test_a_column_the_workload_does_not_apply_to_is_not_a_failure(tmp_path: Path) -> None:
    wl = make(tmp_path)
    wl.not_on = "b"
    results = run_workload(
        wl, [FakeTarget("native"), FakeTarget("a"), FakeTarget("b")], 0, 2, NoProgress()
    )
    assert not any(name == "b" for _, name in wl.calls), "no setup, run or teardown on b"
    by = {r.driver: r for r in results}
    assert by["b"].median is None and not by["b"].applies
    assert by["b"].note == "does not apply here"
    assert by["a"].applies and by["a"].median is not None
    report = BenchReport(machine={}, results=results)
    assert report.failed_columns() == []
    again = BenchReport.from_json(report.to_json())
    assert [r.applies for r in again.results] == [r.applies for r in results]


def test_presets_and_runs() -> None:
    assert rounds("quick", None) == (1, 2)
    assert rounds("default", None)[1] >= 3
    assert rounds("default", 7) == (1, 7)


def test_bench_without_root_says_so_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["--quick"]) == 2
    err = capsys.readouterr().err
    assert "needs root" in err and "loop devices" in err


def test_unknown_driver_or_workload_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["--driver", "zfs"]) == 2
    assert cli.main(["--workload", "nope"]) == 2


def test_workload_limits_on_rounds(tmp_path: Path) -> None:
    from layerfs.benchmarks.runner import workload_rounds
    from layerfs.benchmarks.workloads import load

    density = load("density")(Context("default", tmp_path, drop_caches=lambda: None))
    assert workload_rounds(density, 1, 3, explicit=False) == (0, 2)
    assert workload_rounds(density, 1, 5, explicit=True) == (0, 5)
    prepare = load("prepare")(Context("default", tmp_path, drop_caches=lambda: None))
    assert workload_rounds(prepare, 1, 3, explicit=False) == (1, 3)


def test_output_into_a_missing_directory_is_refused_before_running(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert cli.main(["--json", str(tmp_path / "no" / "r.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
