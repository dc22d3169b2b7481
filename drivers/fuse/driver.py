"""The ``fuse`` storage driver: snapshots in overlay format, served by our own union.

Storage is exactly the ``overlay`` driver's (``layerfs._overlayfmt.layout``):
the same snapshot dirs, short links, workdirs and xattr namespace, so a
store's layers mount under either driver. Mounting starts one server
process per mounted snapshot (see ``launch``); ``mounts()`` describes the
same stack for ``mount -t fuse.layerfs`` (the ``mount.fuse.layerfs`` helper).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from layerfs._environment import fuse_device_problem
from layerfs._overlayfmt.filesystem import format_problem
from layerfs._overlayfmt.layout import Layout, escape_option_path, xattr_prefix
from layerfs._types import Kind, Mount, Usage
from layerfs.driver import Capabilities, DiffDir, Driver, DriverState, SnapshotRef

from . import launch, zygote
from .fs import Config
from .options import FuseOptions

__all__ = ["FuseDriver"]


class FuseDriver(Driver):
    """Userspace union filesystem over overlay-format snapshots.

    Options: ``passthrough`` (``auto`` | ``off``), ``threads`` (request
    threads per mount). See ``FuseOptions``.
    """

    name = "fuse"
    capabilities = Capabilities(diff_dir=True)

    def __init__(self, home: Path, options: Mapping[str, str], state: DriverState) -> None:
        super().__init__(home, options, state)
        self.opts = FuseOptions.from_mapping(options)
        self.layout = Layout(self.home)
        self.run_dir = self.home / "run"
        self._prefix: str | None = None
        self._probe: dict[str, object] | None = None
        self._zygote: zygote.Client | None = None

    @classmethod
    def unavailable_reason(cls, root: Path) -> str | None:
        """Say why FUSE cannot be used here: no usable /dev/fuse, no way to mount,
        or a store root where overlay-format layers cannot live (an overlay, as
        a container's root filesystem usually is; no xattrs).
        """
        problem = fuse_device_problem() or format_problem(root)
        if problem is not None:
            return problem
        if os.geteuid() != 0:
            from . import fusermount

            if not fusermount.available():
                return "not root and no fusermount3 (install fuse3)"
        return None

    @property
    def prefix(self) -> str:
        """The overlay xattr namespace of this store (recorded in its state)."""
        if self._prefix is None:
            self._prefix = xattr_prefix(self.state)
        return self._prefix

    # -- storage -------------------------------------------------------------------

    def create(self, snap: SnapshotRef) -> None:
        """Make the snapshot's upper and work dirs (shared layout)."""
        _ = self.prefix  # decide the namespace before the first layer is written
        self.layout.create(snap)

    def commit(self, snap: SnapshotRef) -> None:
        """Nothing to do: the upper dir becomes a lower layer as it is."""

    def remove(self, snap_id: str) -> None:
        """Stop servers of ``snap_id`` still running, then release its storage."""
        for rec in self._records(snap_id):
            self._stop(rec)
        self.layout.remove(snap_id)

    def usage(self, snap: SnapshotRef) -> Usage:
        """Disk used by the snapshot's own upper dir."""
        return self.layout.usage(snap.id)

    def diff_dir(self, snap: SnapshotRef) -> DiffDir:
        """The upper dir in overlay format (no redirects or metacopy are ever written)."""
        return self.layout.diff_dir(snap, self.prefix)

    # -- mounting ------------------------------------------------------------------------

    def _config(self, snap: SnapshotRef) -> Config:
        lowers = self.layout.lowerdirs(snap)
        upper = work = None
        if snap.kind is Kind.ACTIVE:
            upper = str(self.layout.fs_dir(snap.id))
            work = str(self.layout.work_dir(snap.id))
        if not lowers and upper is None:
            # A view of nothing: its own (empty) tree, read-only.
            lowers = [str(self.layout.fs_dir(snap.id))]
        if not lowers:
            # A base active snapshot: overlay needs a lower dir, use an empty one.
            empty = self.home / "empty"
            empty.mkdir(exist_ok=True)
            lowers = [str(empty)]
        return Config(
            lowers=lowers,
            upper=upper,
            work=work,
            xattr_prefix=self.prefix,
            passthrough=self.opts.passthrough,
            threads=self.opts.threads,
        )

    def mounts(self, snap: SnapshotRef) -> list[Mount]:
        """One ``fuse.layerfs`` mount (``mount.fuse.layerfs`` takes overlay's options)."""
        cfg = self._config(snap)
        opts = ["lowerdir=" + ":".join(escape_option_path(p) for p in cfg.lowers)]
        if cfg.upper:
            opts += [
                f"upperdir={escape_option_path(cfg.upper)}",
                f"workdir={escape_option_path(str(cfg.work))}",
            ]
        else:
            opts.append("ro")
        if cfg.xattr_prefix == "user.":
            opts.append("userxattr")
        if self.opts.passthrough != "auto":
            opts.append(f"passthrough={self.opts.passthrough}")
        return [Mount("fuse.layerfs", "layerfs", tuple(opts))]

    def _record_path(self, snap_id: str, target: str) -> Path:
        digest = hashlib.sha1(target.encode()).hexdigest()[:12]
        return self.run_dir / f"{snap_id}-{digest}.json"

    def _records(self, snap_id: str | None = None) -> list[dict[str, str]]:
        out = []
        pattern = f"{snap_id}-*.json" if snap_id else "*.json"
        for path in sorted(self.run_dir.glob(pattern)) if self.run_dir.exists() else []:
            try:
                rec = json.loads(path.read_text())
                rec["file"] = str(path)
                out.append(rec)
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
        return out

    def mount(self, snap: SnapshotRef, target: Path) -> None:
        """Start a server for ``snap`` on ``target``; returns once it answers.

        A dead FUSE mount left on ``target`` by a killed server is cleaned first.

        Raises:
            errors.Unsupported: no FUSE or no permission; other layerfs errors.
        """
        tgt = str(target)
        launch.cleanup(tgt)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._zygote is None:
            self._zygote = zygote.Client(str(self.run_dir))
        info = launch.start(
            self._config(snap), tgt, source=f"layerfs:{snap.id}", zygote=self._zygote
        )
        rec = {
            "id": snap.id,
            "pid": info.pid,
            "start": info.start,
            "boot": info.boot,
            "connection": info.connection,
            "target": info.target,
        }
        path = self._record_path(snap.id, info.target)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rec))
        os.replace(tmp, path)

    def _stop(self, rec: Mapping[str, object]) -> None:
        launch.stop(str(rec["target"]), _server_of(rec), str(rec.get("connection", "-")))
        Path(str(rec["file"])).unlink(missing_ok=True)

    def unmount(self, snap: SnapshotRef, target: Path) -> None:
        """Detach the mount lazily and make sure its server exits. Idempotent."""
        real = launch._canonical(str(target))
        stopped = False
        for rec in self._records(snap.id):
            if rec.get("target") == real:
                self._stop(rec)
                stopped = True
        if not stopped:
            launch.stop(real)

    # -- facts and upkeep -----------------------------------------------------------------

    def status(self) -> dict[str, object]:
        """Driver facts: options, xattr namespace, INIT flags and the data mode in use."""
        out: dict[str, object] = {
            "driver": self.name,
            "passthrough_option": self.opts.passthrough,
            "threads": self.opts.threads,
            "xattr_prefix": self.prefix,
            "mounted": len(self._records()),
        }
        if self._probe is None:
            self._probe = probe_init(self.opts.passthrough)
        out.update(self._probe)
        return out

    def check(self, known_ids: set[str], repair: bool) -> list[str]:
        """Layout problems, plus dead FUSE mounts (server killed), hung ones and stale records."""
        problems = self.layout.check(known_ids, repair)
        for rec in self._records():
            target = str(rec["target"])
            state = launch.probe(target)
            if state == "dead":
                what = "cleaned up" if repair else "repair unmounts it"
                problems.append(f"fuse mount at {target} has a dead server: {what}")
                if repair:
                    launch.cleanup(target)
                    Path(str(rec["file"])).unlink(missing_ok=True)
            elif state == "hung":
                # Not provably dead (stopped, or just slow): an operator decides.
                problems.append(
                    f"fuse mount at {target}: its server (pid {rec.get('pid')}) does not answer; "
                    "left alone: resume or kill it, then run check(repair=True)"
                )
            elif state == "absent":
                problems.append(f"stale fuse mount record for {target}: removed")
                Path(str(rec["file"])).unlink(missing_ok=True)
        return problems

    def close(self) -> None:
        """Drop the fork server connection: the zygote exits once no store and no server needs it.

        Servers are separate processes tied to their mounts; they stay.
        """
        if self._zygote is not None:
            self._zygote.close()
            self._zygote = None


def _server_of(rec: Mapping[str, object]) -> launch.ServerInfo:
    """The server a run record names; records without a start time never match a process."""
    start = rec.get("start")
    boot = rec.get("boot")
    return launch.ServerInfo(
        int(str(rec.get("pid", 0))),
        str(rec.get("connection", "-")),
        str(rec["target"]),
        None if start is None else str(start),
        None if boot is None else str(boot),
    )


def probe_init(passthrough: str = "auto") -> dict[str, object]:
    """Mount an empty union for a moment to learn what the kernel's INIT offers.

    Returns:
        ``{"init": {...}, "data_mode": ...}``, or ``{"probe_error": ...}``.
    """
    from .server import Server

    with tempfile.TemporaryDirectory(prefix="layerfs-fuse-probe-") as tmp:
        lower = os.path.join(tmp, "l")
        target = os.path.join(tmp, "m")
        os.mkdir(lower)
        os.mkdir(target)
        try:
            server = Server(Config(lowers=[lower], passthrough=passthrough, threads=1), target)
            info = server.start()
        except OSError as exc:
            return {"probe_error": f"cannot mount a FUSE probe: {exc.strerror}"}
        try:
            launch.stop(target)
        finally:
            server.session.close()
        d = info.as_dict()
        return {"init": d, "data_mode": d["data_mode"]}
