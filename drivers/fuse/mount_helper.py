"""``mount.fuse.layerfs``: mount an overlay-style layer stack with the fuse union.

mount(8) runs it as ``mount.fuse.layerfs SOURCE TARGET -o OPTIONS`` for
``mount -t fuse.layerfs -o lowerdir=A:B,upperdir=U,workdir=W none TARGET``.
Without ``-f`` the server is daemonised and the command returns once the
mount answers; with ``-f`` it serves in the foreground until unmounted.
Without ``upperdir`` (or with ``ro``) the mount is read-only.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from layerfs import errors

from .fs import Config
from .launch import start
from .options import parse_mount_options

__all__ = ["main"]


def _config(opts: dict[str, object]) -> Config:
    return Config(
        lowers=list(opts["lowers"]),  # type: ignore[call-overload]
        upper=opts["upper"],  # type: ignore[arg-type]
        work=opts["work"],  # type: ignore[arg-type]
        xattr_prefix=str(opts["xattr_prefix"]),
        passthrough=str(opts["passthrough"]),
        threads=int(opts["threads"]),  # type: ignore[call-overload]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 mounted, 1 failed, 2 bad usage)."""
    ap = argparse.ArgumentParser(prog="mount.fuse.layerfs", description=__doc__)
    ap.add_argument("source")
    ap.add_argument("target")
    ap.add_argument("-o", dest="options", default="")
    ap.add_argument("-f", dest="foreground", action="store_true", help="stay in the foreground")
    ap.add_argument("-d", dest="debug", action="store_true", help="debug log (implies -f)")
    ap.add_argument("-n", action="store_true", help="ignored (mount(8): no mtab)")
    ap.add_argument("-s", action="store_true", help="ignored (mount(8): sloppy)")
    ap.add_argument("-v", action="store_true", help="ignored (mount(8): verbose)")
    args = ap.parse_args(argv)
    try:
        opts = parse_mount_options(args.options)
        config = _config(opts)
    except (errors.LayerfsError, ValueError) as exc:
        print(f"mount.fuse.layerfs: {exc}", file=sys.stderr)
        return 2
    if args.foreground or args.debug:
        from . import server

        extra = ["--debug"] if args.debug else []
        argv2 = _server_args(config, args.target, args.source) + extra
        return server.main(argv2)
    try:
        start(config, args.target, source=args.source)
    except errors.LayerfsError as exc:
        print(f"mount.fuse.layerfs: {exc}", file=sys.stderr)
        return 1
    return 0


def _server_args(config: Config, target: str, source: str) -> list[str]:
    out = [target, "--lowerdir", ":".join(config.lowers)]
    if config.upper:
        out += ["--upperdir", config.upper, "--workdir", str(config.work)]
    out += ["--xattr-prefix", config.xattr_prefix, "--passthrough", config.passthrough]
    out += ["--threads", str(config.threads), "--source", source]
    return out


if __name__ == "__main__":
    sys.exit(main())
