"""Import the test images through containerd into each layerfs driver and run containers."""

from __future__ import annotations

import io
import tarfile
import uuid

import pytest
from stack import BUSYBOX, DEBIAN, DRIVERS, Images

from layerfs import Store

# What the busybox image's top layers leave in /data (see oci.busybox_image_layers).
BUSYBOX_VIEW = """\
test "$(cat /data/keep)" = keep
test ! -e /data/gone
test "$(ls /data/dir)" = new
test -d /data/was-file
test "$(cat /data/was-file/inside)" = inside
"""

# What the container sees after its own writes.
BUSYBOX_AFTER = """\
test ! -e /data/keep
test ! -e /data/dir
test "$(cat /data/written)" = written
test "$(cat /data/made/file)" = deep
test "$(cat /data/was-file/inside)" = inside
"""

# Writes and deletions through the container's snapshot.
BUSYBOX_WRITES = """\
echo written > /data/written
rm /data/keep
rm -r /data/dir
mkdir /data/made
echo deep > /data/made/file
"""

DEBIAN_VIEW = """\
test ! -e /etc/debian_version
test "$(cat /etc/layerfs-release)" = "layerfs test image"
test -f /usr/share/locale
test "$(ls /usr/share/man)" = README
test ! -e /usr/share/doc/dpkg
test -d /usr/share/doc/apt
dpkg-query -W -f='${Package} ${Status}\\n' dpkg | grep -q 'install ok installed'
apt-get --version > /dev/null
bash -c 'echo bash works' | grep -q works
"""

HIDDEN = ("dev/", "proc/", "run/", "sys/")
RUNTIME_MADE = {"proc", "sys", "dev", "run", "etc/resolv.conf", "etc/hostname", "etc/hosts"}

DEBIAN_WRITES = """\
echo written > /root/written
rm /etc/hostname
rm -r /usr/share/doc/bash
"""


def _run(stack, image: str, driver: str, script: str, keep: bool = False) -> str:
    name = f"c-{uuid.uuid4().hex[:10]}"
    res = stack.ctd.run(image, name, stack.snapshotter(driver), "sh", "-ec", script, rm=not keep)
    assert res.returncode == 0, f"container failed ({res.returncode}): {res.stdout}{res.stderr}"
    return name


def _commit_and_diff(stack, driver: str, container: str) -> set[str]:
    """Commit the container's snapshot through ctr; the paths of its diff layer."""
    snapshotter = stack.snapshotter(driver)
    committed = f"{container}-committed"
    stack.ctd.ctr("snapshots", "--snapshotter", snapshotter, "commit", committed, container)
    stack.ctd.ctr("containers", "rm", container)
    # containerd's own differ, on the mounts layerfs returns; it writes the layer to stdout.
    blob = stack.ctd.ctr_bytes("snapshots", "--snapshotter", snapshotter, "diff", committed)
    stack.ctd.ctr("snapshots", "--snapshotter", snapshotter, "rm", committed)
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return {m.name.rstrip("/") for m in tar}


def _store_is_clean(stack, driver: str) -> None:
    """After containerd's GC: no snapshot left in the store and nothing for check to report."""
    server = stack.servers[driver]
    with Store(server.root) as store:
        assert list(store.walk()) == [], stack.logs()
        assert store.check() == []


def _remove_images(stack, *images: str) -> None:
    stack.ctd.ctr("images", "rm", "--sync", *images)


@pytest.mark.parametrize("driver", DRIVERS)
def test_busybox_runs_writes_and_commits(make_stack, images: Images, driver: str) -> None:
    stack = make_stack([driver])
    stack.ctd.ctr(
        "images", "import", "--snapshotter", stack.snapshotter(driver), str(images.busybox)
    )
    name = _run(stack, BUSYBOX, driver, BUSYBOX_VIEW + BUSYBOX_WRITES + BUSYBOX_AFTER, keep=True)
    paths = _commit_and_diff(stack, driver, name)
    assert {"data/written", "data/.wh.keep", "data/.wh.dir", "data/made", "data/made/file"} <= paths
    assert not any(p.startswith(("bin/", "etc/")) for p in paths), sorted(paths)
    # A fresh container sees the image as it was.
    _run(stack, BUSYBOX, driver, BUSYBOX_VIEW)
    _remove_images(stack, BUSYBOX)
    _store_is_clean(stack, driver)


def _listing(stack, driver: str) -> dict[str, str]:
    """Path -> find's type letter for the whole rootfs of a fresh Debian container."""
    out = stack.ctd.run_output(
        DEBIAN, stack.snapshotter(driver), "find / -xdev -mindepth 1 -printf '%y %P\\n'"
    )
    lines = [line for line in out.splitlines() if line != "f tmp/.layerfs-out"]
    return dict(reversed(line.split(" ", 1)) for line in lines)


@pytest.mark.parametrize("driver", DRIVERS)
def test_debian_runs_writes_and_commits(make_stack, images: Images, driver: str) -> None:
    stack = make_stack([driver])
    stack.ctd.ctr(
        "images", "import", "--snapshotter", stack.snapshotter(driver), str(images.debian)
    )
    seen = _listing(stack, driver)
    # The runtime mounts its own /dev, /proc, /run and /sys over the image's.
    want = {p: t for p, t in images.debian_tree.items() if not p.startswith(HIDDEN)}
    missing = {p: t for p, t in want.items() if seen.get(p) != t}
    assert not missing, (
        f"{len(missing)} paths differ from the image, e.g. {sorted(missing.items())[:10]}"
    )
    extra = set(seen) - set(images.debian_tree)
    # runc makes mount points for /proc, /sys, /dev... when the image lacks them.
    assert extra <= RUNTIME_MADE, sorted(extra - RUNTIME_MADE)[:20]
    name = _run(stack, DEBIAN, driver, DEBIAN_VIEW + DEBIAN_WRITES, keep=True)
    paths = _commit_and_diff(stack, driver, name)
    assert {"root/written", "etc/.wh.hostname", "usr/share/doc/.wh.bash"} <= paths
    assert not any(p.startswith("usr/lib/") for p in paths), sorted(paths)[:20]
    _remove_images(stack, DEBIAN)
    _store_is_clean(stack, driver)
