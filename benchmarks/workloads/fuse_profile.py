"""fuse-profile: where a request's time goes in the fuse server, per opcode.

Only the layerfs FUSE columns (``fuse``, ``fuse-nopt``) give figures. Each
run mounts a fresh snapshot of the ``metadata`` workload's tree with the
server's profiler on (``LAYERFS_FUSE_PROFILE``, see the fuse driver's
``profile`` module), does that workload's operations (``lstat`` of every
file cold and warm, then create, chmod and unlink of empty files), and
unmounts; the server writes its profile as it exits. The figures are µs
per request of the hottest opcodes, split into decode, union logic,
syscalls and reply, and the request counts. The profiler's own timing
adds about 0.1 µs per timed call, so read the split, not the speed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..stats import Metric
from ..targets import StoreTarget, Target
from ..tree import TreeTar
from ..workload import Workload
from .apply import tree_tar

#: Opcodes reported, in display order.
OPCODES = ("LOOKUP", "GETATTR", "CREATE", "SETATTR", "UNLINK", "RELEASE")
PARTS = ("decode", "union", "syscalls", "reply")
ENV = "LAYERFS_FUSE_PROFILE"


class FuseProfileWorkload(Workload):
    """Per-opcode µs of the fuse server, split into decode / union / syscalls / reply."""

    name = "fuse-profile"
    title = "fuse server time per request by opcode: decode, union logic, syscalls, reply (µs)"
    sizes = {
        "quick": {"files": 500, "bytes": 8 << 20, "creates": 1000},
        "default": {"files": 5000, "bytes": 100 << 20, "creates": 5000},
        "full": {"files": 5000, "bytes": 100 << 20, "creates": 10000},
    }

    def metrics(self) -> list[Metric]:
        out = []
        for op in OPCODES:
            out.append(Metric(f"{op} total", "µs", ratio=False))
            out += [Metric(f"{op} {part}", "µs", ratio=False) for part in PARTS]
            out.append(Metric(f"{op} count", "requests", ratio=False))
        return out

    def not_for(self, target: Target) -> str | None:
        """Only our own FUSE server has a profiler."""
        if isinstance(target, StoreTarget) and target.driver == "fuse":
            return None
        return "does not apply: only the layerfs fuse server has a per-request profiler"

    def setup(self, target: Target) -> None:
        state: dict[str, object] = {}
        self.state[target.name] = state
        tar: TreeTar = tree_tar(self.ctx, self.size["files"], self.size["bytes"])
        with open(tar.path, "rb") as f:
            state["layer"] = target.apply(f)
        state["paths"] = tar.paths

    def run(self, target: Target) -> dict[str, float]:
        state = self.state[target.name]
        from layerfs.drivers.fuse import profile

        out_dir = tempfile.mkdtemp(prefix="fuse-profile-", dir=str(target.fs.mountpoint))
        key = target.new_key("prof")
        target.prepare(key, str(state["layer"]))
        saved = os.environ.get(ENV)
        os.environ[ENV] = out_dir
        try:
            root = target.mount(key)
        finally:
            if saved is None:
                del os.environ[ENV]
            else:
                os.environ[ENV] = saved
        try:
            _exercise(root, [root / p for p in state["paths"]], self.size["creates"], self.ctx)  # type: ignore[attr-defined]
        finally:
            target.remove(key)  # unmounts: the server writes its profile as it exits
        try:
            prof = profile.merge(profile.load(out_dir))
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        values: dict[str, float] = {}
        for op in OPCODES:
            row = prof.get(op)
            if row is None:
                continue
            us = profile.per_request_us(row)
            values[f"{op} total"] = us["total"]
            for part in PARTS:
                values[f"{op} {part}"] = us[part]
            values[f"{op} count"] = row["count"]
        return values


def _exercise(root: Path, paths: list[Path], creates: int, ctx: object) -> None:
    """The metadata workload's operations, plus a chmod per created file."""
    ctx.drop_caches()  # type: ignore[attr-defined]
    for _ in range(2):  # cold, then warm
        for p in paths:
            os.lstat(p)
    work = root / "profile-create"
    work.mkdir()
    names = [str(work / f"f{i}") for i in range(creates)]
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
    for name in names:
        os.close(os.open(name, flags, 0o644))
    for name in names:
        os.chmod(name, 0o600)
    for name in names:
        os.unlink(name)
    work.rmdir()


WORKLOAD = FuseProfileWorkload
