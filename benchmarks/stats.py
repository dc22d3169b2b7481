"""The figures a bench run reports: samples, medians, spreads and ratios to native.

A *sample* is one timed run of one metric on one column (driver). The
report gives, per (workload, driver, metric), the median of the samples
with their min and max, and the median's ratio to the ``native`` column's
median for the same metric, measured in the same run. Where native does
not do the work at all (it makes no snapshot, so it prepares one in
microseconds), a metric names ``best`` as its baseline: the report then
divides by the best driver of the row instead (``ratio_to_native`` is still
recorded).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence

NATIVE = "native"
#: Baseline of a metric whose ratios divide by the best driver of the row.
BEST = "best"


@dataclasses.dataclass(frozen=True)
class Metric:
    """One figure a workload measures.

    Attributes:
        name: short label, e.g. ``"seq read cold"`` or ``"chain 128"``.
        unit: ``"ms"``, ``"GB/s"``, ``"ops/s"``...
        higher_is_better: True for rates (GB/s, IOPS), False for times and sizes.
        ratio: False when a ratio to native means nothing (native is about
            zero by construction, e.g. page cache per extra snapshot).
        baseline: what the report divides by: ``NATIVE``, or ``BEST`` (the
            row's best driver) for work native does not do, such as making
            a snapshot.
    """

    name: str
    unit: str
    higher_is_better: bool = False
    ratio: bool = True
    baseline: str = NATIVE


@dataclasses.dataclass(frozen=True)
class Result:
    """The summary of one metric of one workload on one column.

    Attributes:
        workload: workload name (``"read"``).
        driver: column name (``"overlay"``, ``"fuse-nopt"``...).
        metric: metric name.
        unit: its unit.
        median: median of the runs (None when the column could not run it).
        min: smallest run.
        max: largest run.
        runs: number of measured runs (warm-up excluded).
        ratio_to_native: ``median / native median``, or None when either is
            missing or native is zero.
        higher_is_better: copied from the metric, for the report's colours.
        note: why the figure is missing, when it is.
        baseline: copied from the metric: what the report's ratios divide by.
        applies: False when the workload does not measure this column at all
            (its note says why): no figure, and no failure either.
    """

    workload: str
    driver: str
    metric: str
    unit: str
    median: float | None
    min: float | None
    max: float | None
    runs: int
    ratio_to_native: float | None
    higher_is_better: bool = False
    note: str = ""
    baseline: str = NATIVE
    applies: bool = True

    def to_json(self) -> dict[str, object]:
        """Return the JSON record of this result (the documented keys, plus extras)."""
        return {
            "workload": self.workload,
            "driver": self.driver,
            "metric": self.metric,
            "unit": self.unit,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "runs": self.runs,
            "ratio_to_native": self.ratio_to_native,
            "higher_is_better": self.higher_is_better,
            "note": self.note,
            "baseline": self.baseline,
            "applies": self.applies,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Result:
        """Build a result from a JSON record written by ``to_json``.

        Raises:
            KeyError: a documented key is missing.
        """

        def num(key: str) -> float | None:
            value = data[key]
            return None if value is None else float(value)  # type: ignore[arg-type]

        return cls(
            workload=str(data["workload"]),
            driver=str(data["driver"]),
            metric=str(data["metric"]),
            unit=str(data["unit"]),
            median=num("median"),
            min=num("min"),
            max=num("max"),
            runs=int(data["runs"]),  # type: ignore[call-overload]
            ratio_to_native=num("ratio_to_native"),
            higher_is_better=bool(data.get("higher_is_better", False)),
            note=str(data.get("note", "")),
            baseline=str(data.get("baseline", NATIVE)),
            applies=bool(data.get("applies", True)),
        )


def median(values: Sequence[float]) -> float:
    """Return the median (mean of the two middle values for an even count).

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("median of no values")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the ``pct`` percentile (0-100) by linear interpolation between ranks.

    Raises:
        ValueError: ``values`` is empty or ``pct`` is outside 0-100.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile {pct} is outside 0-100")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def ratio(value: float | None, native: float | None) -> float | None:
    """Return ``value / native``, or None when either is missing or native is zero."""
    if value is None or native is None or native == 0:
        return None
    return value / native


def summarize(
    workload: str,
    metric: Metric,
    samples: dict[str, list[float]],
    notes: dict[str, str] | None = None,
) -> list[Result]:
    """Turn the samples of one metric into one ``Result`` per column.

    Args:
        workload: the workload's name.
        metric: the metric measured.
        samples: column name -> the measured values (warm-up excluded); a
            column with no values gets a result with ``median`` None.
        notes: column name -> why it has no values.

    Returns:
        One result per column, in the order of ``samples``.
    """
    notes = notes or {}
    native_values = samples.get(NATIVE) or []
    native_median = median(native_values) if native_values else None
    out: list[Result] = []
    for driver, values in samples.items():
        med = median(values) if values else None
        out.append(
            Result(
                workload=workload,
                driver=driver,
                metric=metric.name,
                unit=metric.unit,
                median=med,
                min=min(values) if values else None,
                max=max(values) if values else None,
                runs=len(values),
                ratio_to_native=ratio(med, native_median) if metric.ratio else None,
                higher_is_better=metric.higher_is_better,
                note=notes.get(driver, ""),
                baseline=metric.baseline,
            )
        )
    return out


def drivers_of(results: Iterable[Result]) -> list[str]:
    """Return the column names in first-seen order, ``native`` first."""
    seen: dict[str, None] = {}
    for r in results:
        seen.setdefault(r.driver, None)
    names = list(seen)
    if NATIVE in names:
        names.remove(NATIVE)
        names.insert(0, NATIVE)
    return names
