"""``layerfs bench``: the command line of the bench (``main(argv)``).

Examples::

    layerfs bench                         # default preset, every column present
    layerfs bench --quick --json r.json --plot r.png
    layerfs bench --driver overlay,fuse --workload read --runs 5
    layerfs bench --compare before.json after.json
    layerfs bench --show r.json --format markdown   # paste a saved run into a ticket

Results go to stdout; progress and messages go to stderr, so that
``--format csv > r.csv`` holds nothing but the CSV.
"""

from __future__ import annotations

import argparse
import os
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
from .report import FORMATS, print_compare, print_report, read_json, write_json
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
    p.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="how to print the results: table (boxed on a terminal, plain text in a pipe; "
        "no figure is ever cut), markdown (to paste), csv (one line per figure)",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    p.add_argument("--plot", type=Path, metavar="FILE", help="write a PNG chart")
    saved = p.add_mutually_exclusive_group()
    saved.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="print the change between two --json results, then exit",
    )
    saved.add_argument(
        "--show",
        type=Path,
        metavar="R.json",
        help="print the results of a --json file (in --format), then exit",
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
    try:
        return _main(argv)
    except BrokenPipeError:
        _quiet_broken_pipe()
        return EXIT_OK


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    console = Console(highlight=False)
    err = Console(stderr=True, soft_wrap=True, highlight=False)

    if args.compare or args.show:
        try:
            if args.show:
                print_report(read_json(args.show), console, args.format)
            else:
                a, b = (read_json(p) for p in args.compare)
                names = (str(args.compare[0]), str(args.compare[1]))
                print_compare(a, b, names, console, args.format)
        except errors.LayerfsError as exc:
            err.print(f"layerfs bench: {exc}")
            return EXIT_USAGE
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
    sink = RichProgress(err)
    try:
        with sink.progress:
            report = run_bench(cfg, sink)
    except KeyboardInterrupt:
        err.print("layerfs bench: interrupted; scratch filesystems and mounts were removed")
        return EXIT_INTERRUPTED
    except errors.LayerfsError as exc:
        err.print(f"layerfs bench: {exc}")
        return EXIT_FAILED
    print_report(report, console, args.format)
    status = EXIT_OK
    failed = report.failed_columns()
    if failed:
        # The tables are still worth having, but a script must not take a
        # run with holes in it for a whole one.
        err.print(
            f"layerfs bench: {', '.join(failed)} gave no figure for some work (see the notes)"
        )
        status = EXIT_FAILED
    try:
        if args.json:
            write_json(report, args.json)
            err.print(f"JSON written to {args.json}")
    except OSError as exc:
        err.print(f"layerfs bench: cannot write {args.json}: {exc.strerror}")
        status = EXIT_FAILED
    try:
        if args.plot:
            from .plot import plot

            plot(report.results, args.plot, report.titles, report.machine)
            err.print(f"chart written to {args.plot}")
    except OSError as exc:
        err.print(f"layerfs bench: cannot write {args.plot}: {exc.strerror}")
        status = EXIT_FAILED
    return status


def _quiet_broken_pipe() -> None:
    """After the reader of stdout went away (``| head``), exit without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
