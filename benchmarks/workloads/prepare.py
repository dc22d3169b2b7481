"""prepare: the cost of a container start and stop on an image of 1, 8 or 128 layers.

One operation is prepare + mount + unmount + remove of an active snapshot
on the top layer of a chain; the figure is the mean time of one operation
over a batch, in milliseconds. Native makes no snapshot (it hands back the
parent's directory), so the report's ratios divide by the best driver.
"""

from __future__ import annotations

from pathlib import Path

from ..stats import BEST, Metric
from ..targets import Target
from ..workload import Timer, Workload


class PrepareWorkload(Workload):
    """prepare+mount+unmount+remove on chains of several depths (ms per operation)."""

    name = "prepare"
    title = (
        "prepare + mount + unmount + remove of a snapshot on an N-layer chain (ms, lower is better)"
    )
    sizes = {
        "quick": {"chains": (1, 8), "ops": 1},
        "default": {"chains": (1, 8, 128), "ops": 5},
        "full": {"chains": (1, 8, 128), "ops": 30},
    }

    def metrics(self) -> list[Metric]:
        return [Metric(f"chain {d}", "ms", baseline=BEST) for d in self.size["chains"]]

    def setup(self, target: Target) -> None:
        def populate(path: Path, i: int) -> None:
            (path / f"layer-{i}").write_bytes(b"x" * 512)

        layers = target.chain(max(self.size["chains"]), populate)
        self.state[target.name] = {"layers": layers}

    def run(self, target: Target) -> dict[str, float]:
        layers = self.state[target.name]["layers"]
        out: dict[str, float] = {}
        for depth in self.size["chains"]:
            parent = layers[depth - 1]
            keys = [target.new_key("c") for _ in range(self.size["ops"])]
            with Timer() as t:
                for key in keys:
                    target.prepare(key, parent)
                    target.mount(key)
                    target.unmount(key)
                    target.remove(key)
            out[f"chain {depth}"] = t.seconds * 1000 / len(keys)
        return out


WORKLOAD = PrepareWorkload
