"""containerd's snapshot commands (``ctr snapshots ...``) against ``layerfs serve``.

containerd reads every reply with its own message definitions, so these
prove the wire format: kinds, parents, labels, times, usage and mounts.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from stack import DRIVERS

from layerfs import Store
from layerfs.testing.containerd import wait_until


def _mount_command(line: str, target: Path) -> list[str]:
    # ctr prints "mount -t TYPE SOURCE TARGET -o OPTIONS"
    words = line.split()
    assert words[0] == "mount" and words[1] == "-t", line
    assert words[4] == str(target), line
    return words


@pytest.mark.parametrize("driver", DRIVERS)
def test_ctr_snapshot_commands(make_stack, tmp_path: Path, driver: str) -> None:
    stack = make_stack([driver])

    def snap(*args: str, check: bool = True) -> str:
        return stack.ctd.ctr(
            "snapshots", "--snapshotter", stack.snapshotter(driver), *args, check=check
        )

    target = tmp_path / "mnt"
    target.mkdir()
    snap("prepare", "base")
    mount = _mount_command(snap("mounts", str(target), "base").strip(), target)
    subprocess.run(mount, check=True)
    try:
        (target / "file").write_bytes(b"x" * 65536)
        (target / "dir").mkdir()
    finally:
        subprocess.run(["umount", str(target)], check=True)
    snap("commit", "layer", "base")
    snap("prepare", "work", "layer")
    snap("view", "look", "layer")
    snap("label", "work", "team=storage")

    info = json.loads(snap("info", "work"))
    assert info["Kind"] == "Active" and info["Parent"] == "layer"
    assert info["Labels"]["team"] == "storage"
    assert info["Created"].startswith("20") and info["Updated"] >= info["Created"]
    assert json.loads(snap("info", "layer"))["Kind"] == "Committed"
    assert json.loads(snap("info", "look"))["Kind"] == "View"
    rows = {line.split()[0]: line.split()[1:] for line in snap("ls").splitlines()[1:]}
    assert rows == {"layer": ["Committed"], "look": ["layer", "View"], "work": ["layer", "Active"]}

    usage = {line.split()[0]: line.split() for line in snap("usage").splitlines()[1:]}
    # "layer  64.0 KiB  3": at least the file's bytes, and the root, file and dir inodes.
    size, unit, inodes = usage["layer"][1], usage["layer"][2], int(usage["layer"][3])
    assert unit in ("KiB", "MiB") and float(size) >= (64 if unit == "KiB" else 0.06)
    assert inodes >= 2

    # The view is read-only and holds the layer.
    view = _mount_command(snap("mounts", str(target), "look").strip(), target)
    subprocess.run(view, check=True)
    try:
        assert (target / "file").stat().st_size == 65536
        with pytest.raises(OSError):
            (target / "new").write_text("no")
    finally:
        subprocess.run(["umount", str(target)], check=True)

    # Errors come back as containerd's categories.
    assert "already exists" in _fails(snap, "prepare", "work", "layer")
    assert "not found" in _fails(snap, "info", "missing")
    assert "failed precondition" in _fails(snap, "rm", "layer")

    snap("rm", "work")
    snap("rm", "look", check=False)
    # containerd 1.6's garbage collection may have taken the view (ctr sets no gc.root label
    # on views) without unlinking it from its parent, and then refuses to remove the parent:
    # its own bookkeeping, not the proxy's. Either way layerfs ends up holding exactly
    # what containerd still lists, once the collection has run.
    snap("rm", "layer", check=False)
    with Store(stack.servers[driver].root) as store:

        def settled() -> bool:
            left = {line.split()[0] for line in snap("ls").splitlines()[1:]}
            return {i.name.rsplit("/", 1)[1] for i in store.walk()} == left

        wait_until(settled, "garbage collection through the proxy")
        # check() run while a removal is in flight reports its half-gone storage; wait until
        # the collection is over.
        wait_until(lambda: store.check() == [], "layerfs check empty")


def _fails(snap, *args: str) -> str:
    try:
        snap(*args)
    except subprocess.CalledProcessError as exc:
        return str(exc.stderr)
    raise AssertionError(f"ctr snapshots {' '.join(args)} succeeded")
