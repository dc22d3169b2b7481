"""The ``layerfs`` command: the snapshot API for operators and scripts.

Every subcommand maps to one ``Store`` method. Errors print one line to
stderr and exit with a code per category, so scripts can branch on them:

====  ==================================================
0     success
1     unexpected error
2     bad usage or ``InvalidArgument``
3     ``NotFound``
4     ``AlreadyExists``
5     ``FailedPrecondition``
6     ``Busy``
7     ``Unsupported``
8     ``NoSpace``
9     ``Corrupt`` (or ``check`` found problems)
====  ==================================================
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__, errors
from ._human import human_size, parse_size, status_lines, table_lines
from ._store import Store, default_root
from ._types import Info, Mount

EXIT_CODES: dict[type[errors.LayerfsError], int] = {
    errors.InvalidArgument: 2,
    errors.NotFound: 3,
    errors.AlreadyExists: 4,
    errors.FailedPrecondition: 5,
    errors.Busy: 6,
    errors.Unsupported: 7,
    errors.NoSpace: 8,
    errors.Corrupt: 9,
}


def _info_json(info: Info) -> dict[str, Any]:
    return {
        "name": info.name,
        "parent": info.parent,
        "kind": info.kind.value,
        "labels": dict(info.labels),
        "created": info.created.isoformat() if info.created else None,
        "updated": info.updated.isoformat() if info.updated else None,
    }


def _mount_json(m: Mount) -> dict[str, Any]:
    return {"type": m.type, "source": m.source, "options": list(m.options)}


def _labels(pairs: Sequence[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep:
            raise errors.InvalidArgument(f"label {pair!r} must be KEY=VALUE")
        out[key] = value
    return out


def _options(pairs: Sequence[str] | None) -> dict[str, str] | None:
    return _labels(pairs) or None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``layerfs`` (``bench`` is handed on before parsing)."""
    p = argparse.ArgumentParser(prog="layerfs", description="Container layers and snapshots.")
    p.add_argument("--version", action="version", version=f"layerfs {__version__}")
    p.add_argument(
        "--root", help="store directory (default: %(default)s)", default=str(default_root())
    )
    p.add_argument("--driver", help="storage driver (default: recorded, or probed)")
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE", help="driver option")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    # --json after the command too (``layerfs status --json``), as docker and ctr take it;
    # SUPPRESS leaves the value given before the command when it is not repeated after.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[after])

    command("status", "driver facts and counts")
    ls = command("ls", "list snapshots (walk)")
    ls.add_argument(
        "filters", nargs="*", help='containerd filters, e.g. kind==active labels."a.b"==v'
    )
    ls.add_argument("-q", "--quiet", action="store_true", help="print the keys only")
    for verb, helptext in (
        ("prepare", "create an active snapshot"),
        ("view", "create a read-only view"),
    ):
        c = command(verb, helptext)
        c.add_argument("key")
        c.add_argument("parent", nargs="?")
        c.add_argument("--label", action="append", metavar="KEY=VALUE")
    c = command("commit", "commit an active snapshot")
    c.add_argument("name")
    c.add_argument("key")
    c.add_argument("--label", action="append", metavar="KEY=VALUE")
    c = command("rm", "remove snapshots")
    c.add_argument("keys", nargs="+")
    c = command("mounts", "print the mounts of a snapshot")
    c.add_argument("key")
    c = command("mount", "mount a snapshot (stays mounted after exit)")
    c.add_argument("key")
    c.add_argument("target", nargs="?")
    c = command("umount", "drop one mount reference")
    c.add_argument("key")
    c.add_argument("target", nargs="?")
    c = command("import", "apply an OCI layer tar (plain, gzip, zstd)")
    c.add_argument("tar", help="path, or - for stdin")
    c.add_argument("--parent")
    c.add_argument("--label", action="append", metavar="KEY=VALUE")
    c.add_argument(
        "--max-size", metavar="SIZE", help="refuse a layer whose tar is bigger (e.g. 512M, 10G)"
    )
    c = command("export", "write the OCI layer tar of a snapshot")
    c.add_argument("name")
    c.add_argument("-O", "--output", help="file (default: stdout)")
    c = command("diff", "list added/modified/deleted paths")
    c.add_argument("name")
    c = command("usage", "disk used by a snapshot")
    c.add_argument("key")
    c = command("check", "find (and --repair) inconsistencies")
    c.add_argument("--repair", action="store_true")
    c = command("serve", "serve the store to containerd (snapshots gRPC service)")
    c.add_argument("--socket", help="unix socket (default: /run/layerfs/snapshotter.sock)")
    c.add_argument("--threads", type=int, default=8, help="request threads (default: 8)")
    c.add_argument("--log-level", default="info", choices=("debug", "info", "warning"))
    command("bench", "compare the drivers on this machine (see layerfs bench --help)")
    return p


def _print(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2, sort_keys=True)
        sys.stdout.write("\n")
    elif text:
        print(text)


def _serve(args: argparse.Namespace) -> int:
    import logging

    from .snapshotter import DEFAULT_SOCKET, serve

    # Our own log at the level asked for; other libraries' (sh logs every command) at warnings.
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s layerfs serve: %(levelname)s %(message)s"
    )
    logging.getLogger("layerfs.serve").setLevel(args.log_level.upper())
    socket_path = args.socket or DEFAULT_SOCKET
    serve(args.root, args.driver, _options(args.option), socket_path, threads=args.threads)
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "serve":
        return _serve(args)
    with Store(args.root, driver=args.driver, options=_options(args.option)) as store:
        cmd = args.command
        if cmd == "status":
            status = store.status()
            _print(args, status, "\n".join(status_lines(status)))
        elif cmd == "ls":
            infos = list(store.walk(*args.filters))
            rows = [[i.name, i.parent or "", i.kind.value] for i in infos]
            text = "\n".join(
                [i.name for i in infos]
                if args.quiet
                else table_lines(["KEY", "PARENT", "KIND"], rows)
            )
            _print(args, [_info_json(i) for i in infos], text)
        elif cmd in ("prepare", "view"):
            method = store.prepare if cmd == "prepare" else store.view
            mounts = method(args.key, args.parent, labels=_labels(args.label))
            text = "\n".join(f"{m.type} {m.source} {','.join(m.options)}" for m in mounts)
            _print(args, [_mount_json(m) for m in mounts], text)
        elif cmd == "commit":
            info = store.commit(args.name, args.key, labels=_labels(args.label) or None)
            _print(args, _info_json(info), info.name)
        elif cmd == "rm":
            for key in args.keys:
                store.remove(key)
        elif cmd == "mounts":
            mounts = store.mounts(args.key)
            text = "\n".join(f"{m.type} {m.source} {','.join(m.options)}" for m in mounts)
            _print(args, [_mount_json(m) for m in mounts], text)
        elif cmd == "mount":
            path = store.mount(args.key, args.target, persistent=True)
            _print(args, {"path": path}, path)
        elif cmd == "umount":
            store.unmount(args.key, args.target)
        elif cmd == "import":
            limits: dict[str, Any] = {"parent": args.parent, "labels": _labels(args.label)}
            if args.max_size is not None:
                limits["max_size"] = parse_size(args.max_size, "--max-size")
            if args.tar == "-":
                info = store.apply(sys.stdin.buffer, **limits)
            else:
                try:
                    f = open(args.tar, "rb")
                except OSError as exc:
                    raise errors.from_oserror(exc, f"open layer tar {args.tar}") from exc
                with f:
                    info = store.apply(f, **limits)
            _print(args, _info_json(info), info.name)
        elif cmd == "export":
            out = open(args.output, "wb") if args.output else sys.stdout.buffer
            try:
                for chunk in store.export(args.name):
                    out.write(chunk)
            finally:
                if args.output:
                    out.close()
        elif cmd == "diff":
            changes = store.changes(args.name)
            marks = {"add": "A", "modify": "M", "delete": "D"}
            text = "\n".join(f"{marks[c.kind.value]} /{c.path}" for c in changes)
            _print(args, [{"kind": c.kind.value, "path": c.path} for c in changes], text)
        elif cmd == "usage":
            u = store.usage(args.key)
            text = "\n".join(
                table_lines(
                    ["KEY", "SIZE", "INODES"], [[args.key, human_size(u.size), str(u.inodes)]]
                )
            )
            _print(args, {"size": u.size, "inodes": u.inodes}, text)
        elif cmd == "check":
            problems = store.check(repair=args.repair)
            _print(args, {"problems": problems, "repaired": args.repair}, "\n".join(problems))
            if problems and not args.repair:
                return 9
    return 0


#: The source of the fuse driver's mounts; first argument when mount.fuse runs us.
FUSE_SOURCE = "layerfs"

_VALUE_OPTIONS = {"--root", "--driver", "-o", "--option"}


def _command_index(argv: Sequence[str]) -> int | None:
    """Where the subcommand stands in ``argv``, skipping global options and their values."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _VALUE_OPTIONS:
            i += 2
        elif arg.startswith("-"):
            i += 1
        else:
            return i
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``layerfs`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    at = _command_index(argv)
    if at is not None and argv[at] == "bench":
        # `bench` has its own options: hand everything after it to the bench.
        try:
            from .benchmarks.cli import main as bench_main
        except ImportError as exc:
            print(
                f"layerfs bench needs the bench extra ({exc.name} is missing): "
                "pip install 'layerfs[bench]'",
                file=sys.stderr,
            )
            return 2

        return bench_main(argv[at + 1 :])
    if at == 0 and argv[0] == FUSE_SOURCE:
        # containerd mounts `fuse.layerfs` through mount.fuse, which runs
        # `layerfs layerfs TARGET -o OPTIONS`: the mount helper's job.
        from .drivers.fuse.mount_helper import main as mount_main

        return mount_main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except errors.LayerfsError as exc:
        print(f"layerfs: {exc}", file=sys.stderr)
        for cls in type(exc).__mro__:
            if cls in EXIT_CODES:
                return EXIT_CODES[cls]
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("layerfs: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
