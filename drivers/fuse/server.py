"""Run one union filesystem server: mount, answer INIT, serve until unmounted.

Usable as ``python -m layerfs.drivers.fuse.server [options] TARGET``; the
driver and ``mount.fuse.layerfs`` start it. With ``--ready-fd`` it writes
``ok <pid> <connection>\\n`` (or ``error <errno> <message>\\n``) to that fd
once the mount answers requests, then closes it. ``--daemon`` forks first
so the starter can wait for the ready line and move on.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from layerfs._sys import mount as sysmount
from layerfs.driver import is_privileged

from . import protocol as p
from .daemon import daemonize
from .fs import Config, UnionFS
from .mountinfo import connection_of
from .ops import Ops
from .profile import ENV as PROFILE_ENV
from .session import InitInfo, Session

__all__ = ["Server", "main"]

log = logging.getLogger("layerfs.fuse")


class Server:
    """A union filesystem served on one mount point.

    Args:
        config: layers and options.
        target: the mount point.
        source: the mount source shown in /proc/mounts.
    """

    def __init__(self, config: Config, target: str, source: str = "layerfs") -> None:
        self.config = config
        self.target = os.path.abspath(target)
        self.source = source
        self.fs = UnionFS(config)
        self.ops = Ops(self.fs)
        # Registering backing files needs CAP_SYS_ADMIN in the initial namespace.
        passthrough = config.passthrough if is_privileged() else "off"
        self.session = Session(self.ops.table(), config.threads, passthrough, on_init=self._on_init)

    def _on_init(self, info: InitInfo) -> None:
        self.ops.passthrough = info.passthrough
        self.ops.writeback = info.writeback
        if info.passthrough:
            self.fs.backing_open = self.session.backing_open
            self.fs.backing_close = self.session.backing_close

    def start(self) -> InitInfo:
        """Mount and complete INIT; the filesystem answers once ``serve`` runs.

        Raises:
            OSError: mount(2) or the handshake failed.
        """
        self.session.mount(self.target, self.source, readonly=not self.fs.has_upper)
        try:
            return self.session.handshake()
        except BaseException:
            with contextlib.suppress(OSError):
                sysmount.umount(self.target, sysmount.MNT_DETACH)
            raise

    def serve(self) -> None:
        """Serve requests until the filesystem is unmounted and released."""
        try:
            self.session.serve()
        finally:
            self.session.close()

    def stats(self) -> dict[str, object]:
        """Requests served per opcode name, and the init negotiation."""
        names = p.OPCODE_NAMES
        counts = {names.get(i, str(i)): c for i, c in enumerate(self.session.counts) if c}
        info = self.session.init.as_dict() if self.session.init else {}
        return {"requests": counts, "init": info}


@functools.cache
def _parser() -> argparse.ArgumentParser:
    # Built once: a zygote builds it before forking, so servers share it.
    ap = argparse.ArgumentParser(prog="layerfs-fuse-server", description=__doc__)
    ap.add_argument("target")
    ap.add_argument("--lowerdir", default="", help="lower dirs, nearest first, ':'-separated")
    ap.add_argument("--upperdir")
    ap.add_argument("--workdir")
    ap.add_argument("--xattr-prefix", default="trusted.")
    ap.add_argument("--passthrough", default="auto", choices=["auto", "off"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--source", default="layerfs")
    ap.add_argument("--ready-fd", type=int, default=-1)
    ap.add_argument("--stats-file")
    ap.add_argument("--log-file")
    ap.add_argument("--profile-dir", help="write a per-opcode profile there (see profile.py)")
    ap.add_argument("--daemon", action="store_true")
    ap.add_argument("--debug", action="store_true")
    return ap


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def _tell(fd: int, line: str) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.write(fd, line.encode() + b"\n")
            os.close(fd)


def run(args: argparse.Namespace) -> int:
    """Run a server from parsed arguments; return the exit status."""
    ready = args.ready_fd
    try:
        config = Config(
            lowers=[x for x in args.lowerdir.split(":") if x],
            upper=args.upperdir,
            work=args.workdir,
            xattr_prefix=args.xattr_prefix,
            passthrough=args.passthrough,
            threads=args.threads,
        )
        server = Server(config, args.target, args.source)
        server.start()
    except (OSError, ValueError) as exc:
        code = getattr(exc, "errno", None) or errno.EINVAL
        _tell(ready, f"error {code} {exc}")
        log.error("cannot start: %s", exc)
        return 1
    conn = connection_of(server.target) or "-"
    _tell(ready, f"ok {os.getpid()} {conn}")

    def _stop(signum: int, frame: object) -> None:
        with contextlib.suppress(OSError):
            sysmount.umount(server.target, sysmount.MNT_DETACH)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server.serve()
    if args.stats_file:
        with open(args.stats_file, "w") as f:
            json.dump(server.stats(), f)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m layerfs.drivers.fuse.server``."""
    return main_parsed(_parse(argv))


def main_parsed(args: argparse.Namespace) -> int:
    """``main`` for arguments already parsed (a zygote parses before it forks)."""
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        filename=args.log_file,
        format="%(asctime)s layerfs-fuse[%(process)d] %(levelname)s %(message)s",
    )
    args.target = os.path.abspath(args.target)
    args.lowerdir = ":".join(os.path.abspath(x) for x in args.lowerdir.split(":") if x)
    for name in ("upperdir", "workdir", "stats_file", "log_file"):
        if getattr(args, name):
            setattr(args, name, os.path.abspath(getattr(args, name)))
    if args.profile_dir:
        # The session reads it from the environment; a forked server's is the fork server's.
        os.environ[PROFILE_ENV] = args.profile_dir
    os.umask(0)  # modes in requests are final (the kernel applied the caller's umask)
    if args.daemon:
        daemonize(keep_stderr=bool(args.log_file))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
