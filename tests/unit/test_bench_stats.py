"""The bench's statistics: median, min, max, percentiles and ratios to native."""

from __future__ import annotations

import pytest
from layerfs.benchmarks.stats import Metric, drivers_of, median, percentile, ratio, summarize


def test_median_odd_and_even() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([7.0]) == 7.0


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        median([])


def test_percentile_interpolates() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 100.0
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_ratio_handles_missing_and_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None


def test_summarize_gives_median_min_max_and_ratio_to_native() -> None:
    metric = Metric("seq", "GB/s", higher_is_better=True)
    out = summarize(
        "read",
        metric,
        {"native": [2.0, 4.0, 3.0], "overlay": [1.0, 1.5, 9.0], "fuse": []},
        notes={"fuse": "setup failed: boom"},
    )
    by = {r.driver: r for r in out}
    assert [r.driver for r in out] == ["native", "overlay", "fuse"]
    assert (by["native"].median, by["native"].min, by["native"].max) == (3.0, 2.0, 4.0)
    assert by["native"].ratio_to_native == 1.0
    assert by["overlay"].median == 1.5
    assert by["overlay"].ratio_to_native == pytest.approx(0.5)
    assert by["overlay"].runs == 3
    assert by["fuse"].median is None and by["fuse"].ratio_to_native is None
    assert by["fuse"].note == "setup failed: boom"
    assert by["overlay"].higher_is_better is True


def test_summarize_without_ratio_for_metrics_where_native_is_zero() -> None:
    out = summarize(
        "density", Metric("per extra", "MiB", ratio=False), {"native": [0.1], "copy": [64.0]}
    )
    assert all(r.ratio_to_native is None for r in out)


def test_drivers_of_puts_native_first() -> None:
    out = summarize("x", Metric("m", "s"), {"copy": [1.0], "native": [1.0], "overlay": [2.0]})
    assert drivers_of(out) == ["native", "copy", "overlay"]
