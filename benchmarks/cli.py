"""``layerfs bench``: the command line of the bench (``main(argv)``).

Examples::

    layerfs bench                         # default preset, every column present
    layerfs bench --quick --json r.json --plot r.png
    layerfs bench --driver overlay,fuse --workload read --runs 5
    layerfs bench --compare before.json after.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from layerfs import errors

from . import columns as cols
from .runner import RunConfig, need_root, run_bench
from .scratch import FILESYSTEMS
from .workloads import NAMES as WORKLOADS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def _split(values: list[str] | None) -> list[str]:
    out: list[str] = []
    for v in values or []:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return list(dict.fromkeys(out))


def parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``layerfs bench``."""
    p = argparse.ArgumentParser(
        prog="layerfs bench",
        description=(
            "Compare the storage drivers on this machine: each column runs in a scratch "
            "store on its own loop-backed filesystem; figures are medians with ratios to "
            "the same work on a plain directory (native). Needs root."
        ),
    )
    p.add_argument(
        "--driver",
        action="append",
        metavar="NAME[,NAME]",
        help=f"columns to run (repeatable or comma list; default all present): {', '.join(cols.COLUMN_NAMES)}",
    )
    p.add_argument(
        "--workload",
        action="append",
        metavar="NAME[,NAME]",
        help=f"workloads to run (default all): {', '.join(WORKLOADS)}",
    )
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true", help="tiny sizes, about a minute")
    preset.add_argument(
        "--full", action="store_true", help="full sizes, what to run before choosing"
    )
    p.add_argument("--runs", type=int, metavar="N", help="measured runs per figure (median of N)")
    p.add_argument("--fs", choices=FILESYSTEMS, default="ext4", help="scratch filesystem type")
    p.add_argument(
        "--scratch", type=Path, metavar="DIR", help="where the scratch dir goes (default /var/tmp)"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG chart")
    p.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="print the change between two --json results, then exit",
    )
    return p


class RichProgress:
    """The runner's progress shown with rich: workload, column, step and a bar."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("starting", total=None)

    def start(self, total: int) -> None:
        """Set the number of steps."""
        self.progress.update(self.task, total=total)

    def step(self, workload: str, column: str, what: str) -> None:
        """Show the step being done and advance the bar."""
        self.progress.update(self.task, description=f"{workload:<9} {column:<15} {what}")
        self.progress.advance(self.task)

    def log(self, message: str) -> None:
        """Print a line above the bar."""
        self.progress.console.print(f"[yellow]{message}[/]")


def main(argv: list[str]) -> int:
    """Run ``layerfs bench`` with ``argv`` (the arguments after ``bench``).

    Returns:
        0 on success, 1 when the run failed, 2 on bad usage or without
        root, 130 when interrupted.
    """
    args = parser().parse_args(argv)
    console = Console()
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    from .report import compare_table, print_report, read_json, write_json

    if args.compare:
        try:
            a, b = (read_json(p) for p in args.compare)
        except errors.LayerfsError as exc:
            err.print(f"layerfs bench: {exc}")
            return EXIT_USAGE
        console.print(compare_table(a, b, (str(args.compare[0]), str(args.compare[1]))))
        return EXIT_OK
    why = need_root()
    if why:
        err.print(f"layerfs bench: {why}")
        return EXIT_USAGE
    if args.runs is not None and args.runs < 1:
        err.print("layerfs bench: --runs must be at least 1")
        return EXIT_USAGE
    for opt, path in (("--json", args.json), ("--plot", args.plot)):
        if path is not None and not path.absolute().parent.is_dir():
            err.print(
                f"layerfs bench: {opt} {path}: directory {path.absolute().parent} does not exist"
            )
            return EXIT_USAGE
    try:
        columns = _split(args.driver) or list(cols.COLUMN_NAMES)
        for c in columns:
            cols.spec(c)
        workloads = _split(args.workload) or list(WORKLOADS)
        for w in workloads:
            if w not in WORKLOADS:
                raise errors.InvalidArgument(
                    f"--workload {w!r} is unknown; choose from {', '.join(WORKLOADS)}"
                )
    except errors.InvalidArgument as exc:
        err.print(f"layerfs bench: {exc}")
        return EXIT_USAGE
    cfg = RunConfig(
        workloads=workloads,
        columns=columns,
        preset="quick" if args.quick else "full" if args.full else "default",
        runs=args.runs,
        fstype=args.fs,
        scratch=args.scratch,
    )
    sink = RichProgress(console)
    try:
        with sink.progress:
            report = run_bench(cfg, sink)
    except KeyboardInterrupt:
        err.print("layerfs bench: interrupted; scratch filesystems and mounts were removed")
        return EXIT_INTERRUPTED
    except errors.LayerfsError as exc:
        err.print(f"layerfs bench: {exc}")
        return EXIT_FAILED
    print_report(report, console)
    status = EXIT_OK
    try:
        if args.json:
            write_json(report, args.json)
            console.print(f"JSON written to {args.json}")
    except OSError as exc:
        err.print(f"layerfs bench: cannot write {args.json}: {exc.strerror}")
        status = EXIT_FAILED
    try:
        if args.plot:
            from .plot import plot

            plot(report.results, args.plot, report.titles, report.machine)
            console.print(f"chart written to {args.plot}")
    except OSError as exc:
        err.print(f"layerfs bench: cannot write {args.plot}: {exc.strerror}")
        status = EXIT_FAILED
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
