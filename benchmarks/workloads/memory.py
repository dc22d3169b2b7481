"""memory: what the driver's userspace processes hold while N snapshots are mounted.

N active snapshots of one small image are prepared and mounted (untimed);
then the proportional set size (PSS, ``/proc/<pid>/smaps_rollup``) of
every process serving the column is summed. A process serves the column
when its command line names a path below the column's scratch
filesystem: FUSE servers, a fork server, fuse-overlayfs daemons. PSS
splits each shared page among the processes that map it, so pages a
fork server shares with the servers it forked count once, and the sum
is what the column really holds. Figures, in MiB: the total at each N,
and the extra cost per additional mount at N, ``(total(N) - total(1)) /
(N - 1)``. Kernel drivers (overlay, copy) and native run no process:
their figures are zero by measurement, not by assumption.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..stats import Metric
from ..targets import Target
from ..workload import Workload


def serving_processes(below: Path) -> list[int]:
    """Pids (not ours) whose command line has an argument naming a path below ``below``."""
    needle = os.fsencode(str(below).rstrip("/") + "/")
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read()
        except OSError:
            continue  # exited while we looked
        if needle in args:
            found.append(int(entry))
    return found


def pss_kib(pid: int) -> int:
    """The proportional set size of ``pid`` in KiB (0 when it has exited)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class MemoryWorkload(Workload):
    """Total PSS of the column's userspace processes at N mounts, and per extra mount (MiB)."""

    name = "memory"
    title = (
        "resident memory (PSS) of the driver's userspace processes with N snapshots mounted "
        "(MiB, lower is better)"
    )
    warmup = False
    max_runs = {"quick": 1, "default": 2, "full": 3}
    sizes = {
        "quick": {"counts": (1, 10)},
        "default": {"counts": (1, 10, 100)},
        "full": {"counts": (1, 10, 100)},
    }

    def metrics(self) -> list[Metric]:
        counts = self.size["counts"]
        out = [Metric(f"{n} mount{'s' if n > 1 else ''}", "MiB", ratio=False) for n in counts]
        out += [Metric(f"per extra, {n}", "MiB", ratio=False) for n in counts if n > 1]
        return out

    def setup(self, target: Target) -> None:
        def populate(path: Path) -> None:
            (path / "etc").mkdir()
            (path / "etc" / "hostname").write_text("layerfs\n")

        self.state[target.name] = {"layer": target.layer(populate)}

    def run(self, target: Target) -> dict[str, float]:
        layer = self.state[target.name]["layer"]
        below = target.fs.mountpoint
        totals: dict[int, float] = {}
        for n in self.size["counts"]:
            keys = [target.new_key("mem") for _ in range(n)]
            try:
                for key in keys:
                    target.prepare(key, layer)
                    target.mount(key)
                totals[n] = sum(pss_kib(pid) for pid in serving_processes(below)) / 1024
            finally:
                for key in keys:
                    if target.holds(key):
                        target.remove(key)
        out: dict[str, float] = {}
        for n, total in totals.items():
            out[f"{n} mount{'s' if n > 1 else ''}"] = total
            if n > 1:
                out[f"per extra, {n}"] = (total - totals[1]) / (n - 1)
        return out


WORKLOAD = MemoryWorkload
