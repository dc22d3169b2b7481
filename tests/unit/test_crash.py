"""Kill a process (SIGKILL) at every step of each operation, reopen, and check.

After reopening, the store must report no problems, and each operation
must have happened entirely or not at all.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import layerfs
from layerfs.testing.suite import build_tar
from layerfs.testing.trees import describe

CHILD = textwrap.dedent(
    """
    import io, sys, layerfs
    root, op = sys.argv[1], sys.argv[2]
    store = layerfs.Store(root, driver="copy")
    if op == "prepare":
        store.prepare("new", "base")
    elif op == "commit":
        store.commit("done", "work")
    elif op == "remove":
        store.remove("gone")
    elif op == "apply":
        store.apply(open(sys.argv[3], "rb"), parent="base")
    elif op == "mount":
        store.mount("work")
    """
)

POINTS = {
    "prepare": ["creating:recorded", "creating:created"],
    "commit": ["commit:marked", "commit:frozen"],
    "remove": ["remove:marked", "remove:released"],
    "apply": ["applying:recorded", "applying:created", "apply:extracted", "apply:marked"],
    "mount": ["mount:recorded"],
}


def _seed(root: Path) -> None:
    with layerfs.Store(root, driver="copy") as s:
        s.apply(io.BytesIO(build_tar([("etc", None), ("etc/os-release", b"ID=test\n")])))
        base = next(s.walk("kind==committed")).name
        s.prepare("tmp", base)
        with s.mounted("tmp") as p:
            Path(p, "file").write_text("base")
        s.commit("base", "tmp")
        s.prepare("work", "base")
        with s.mounted("work") as p:
            Path(p, "file").write_text("work")
        s.prepare("g", "base")
        s.commit("gone", "g")


def _run_child(root: Path, op: str, point: str, tar: Path) -> int:
    env = dict(os.environ, LAYERFS_CRASH_AT=point)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(root), op, str(tar)],
        env=env,
        capture_output=True,
        timeout=60,
    )
    return proc.returncode


@pytest.mark.parametrize(
    ("op", "point"), [(op, p) for op, points in POINTS.items() for p in points]
)
def test_kill_at_each_step(tmp_path: Path, op: str, point: str) -> None:
    root = tmp_path / "store"
    _seed(root)
    tar = tmp_path / "layer.tar"
    tar.write_bytes(build_tar([("new-file", b"from the layer")]))
    with layerfs.Store(root) as s:
        before = {i.name: i.kind for i in s.walk()}
        base_tree = describe(s.mount("base"))
        s.unmount("base")

    rc = _run_child(root, op, point, tar)
    assert rc == -signal.SIGKILL, f"child was not killed at {point} (exit {rc})"

    with layerfs.Store(root) as s:
        assert s.check() == [], "reopen left problems"
        after = {i.name: i.kind for i in s.walk()}
        # All or nothing, per operation.
        if op == "prepare":
            assert after in (before, {**before, "new": layerfs.Kind.ACTIVE})
        elif op == "commit":
            done = {k: v for k, v in before.items() if k != "work"} | {
                "done": layerfs.Kind.COMMITTED
            }
            assert after in (before, done)
            if "done" in after:
                with s.mounted("done") as p:
                    assert Path(p, "file").read_text() == "work"
        elif op == "remove":
            assert after in (before, {k: v for k, v in before.items() if k != "gone"})
        elif op == "apply":
            added = set(after) - set(before)
            assert set(before) <= set(after) and len(added) <= 1
            for name in added:
                with s.mounted(name) as p:
                    assert Path(p, "new-file").read_text() == "from the layer"
        elif op == "mount":
            assert after == before
        # Nothing stored before was damaged.
        with s.mounted("base") as p:
            assert describe(p) == base_tree
        # Whatever survived still works.
        for name in after:
            s.stat(name)
        s.prepare("after-crash", "base")
        s.remove("after-crash")
        assert s.check() == []


def test_mount_of_a_dead_process_is_reported_then_repaired(tmp_path: Path) -> None:
    root = tmp_path / "store"
    _seed(root)
    rc = _run_child(root, "mount", "none", tmp_path / "unused")
    assert rc == 0
    with layerfs.Store(root) as s:
        problems = s.check()
        assert len(problems) == 1 and "exited without unmounting" in problems[0]
        with pytest.raises(layerfs.errors.Busy):
            s.remove("work")
        assert s.check(repair=True) == problems
        assert s.check() == []
        s.remove("work")
