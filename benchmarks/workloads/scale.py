"""scale: creating and removing many snapshots of one image.

Each of N snapshots is prepared on the same small image, then each is
removed; every operation is timed on its own. Figures: the median (p50)
and 99th percentile (p99) time of one create and of one remove, in ms.
Native makes no snapshot (it hands back the parent's directory), so the
report's ratios divide by the best driver.
"""

from __future__ import annotations

from pathlib import Path

from ..stats import BEST, Metric, percentile
from ..targets import Target
from ..workload import Timer, Workload


class ScaleWorkload(Workload):
    """Create then remove N snapshots (ms per operation, p50 and p99)."""

    name = "scale"
    title = "create then remove N snapshots of one image (ms per operation, p50 and p99)"
    sizes = {
        "quick": {"count": 50},
        "default": {"count": 1000},
        "full": {"count": 1000},
    }

    def metrics(self) -> list[Metric]:
        return [
            Metric("create p50", "ms", baseline=BEST),
            Metric("create p99", "ms", baseline=BEST),
            Metric("remove p50", "ms", baseline=BEST),
            Metric("remove p99", "ms", baseline=BEST),
        ]

    def setup(self, target: Target) -> None:
        def populate(path: Path) -> None:
            (path / "etc").mkdir()
            for i in range(20):
                (path / "etc" / f"conf{i}").write_bytes(b"k=v\n" * 64)

        self.state[target.name] = {"layer": target.layer(populate)}

    def run(self, target: Target) -> dict[str, float]:
        layer = self.state[target.name]["layer"]
        keys = [target.new_key("s") for _ in range(self.size["count"])]
        creates: list[float] = []
        removes: list[float] = []
        try:
            for key in keys:
                with Timer() as t:
                    target.prepare(key, layer)
                creates.append(t.seconds * 1000)
            for key in keys:
                with Timer() as t:
                    target.remove(key)
                removes.append(t.seconds * 1000)
        finally:
            for key in keys:
                if target.holds(key):
                    target.remove(key)
        return {
            "create p50": percentile(creates, 50),
            "create p99": percentile(creates, 99),
            "remove p50": percentile(removes, 50),
            "remove p99": percentile(removes, 99),
        }


WORKLOAD = ScaleWorkload
