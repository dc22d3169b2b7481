"""Images through Debian's docker-registry: push, delete everything local, pull into layerfs, run."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from stack import BUSYBOX, DEBIAN, DRIVERS, Images

from layerfs import Store
from layerfs.testing.containerd import CtrError, Registry


@pytest.fixture
def registry(tmp_path: Path):
    with Registry(tmp_path / "registry") as reg:
        yield reg


@pytest.mark.parametrize("driver", DRIVERS)
def test_push_delete_pull_run(make_stack, images: Images, registry: Registry, driver: str) -> None:
    stack = make_stack([driver])
    ctr = stack.ctd.ctr
    snapshotter = stack.snapshotter(driver)
    remote = {
        BUSYBOX: f"{registry.host}/layerfs/busybox:latest",
        DEBIAN: f"{registry.host}/layerfs/debian:bookworm",
    }
    for tar in (images.busybox, images.debian):
        ctr("images", "import", "--no-unpack", str(tar))
    for local, ref in remote.items():
        ctr("images", "tag", local, ref)
        _push(ctr, ref)
    # Everything local goes: images, their content, and (never unpacked) no snapshots.
    ctr("images", "rm", "--sync", *remote, *remote.values())
    assert ctr("images", "ls", "-q").split() == []
    assert ctr("content", "ls", "-q").split() == []

    for ref in remote.values():
        ctr("images", "pull", "--plain-http", "--snapshotter", snapshotter, ref)
    with Store(stack.servers[driver].root) as store:
        # busybox: 3 layers; Debian: 4 layers; every one a committed snapshot in layerfs.
        assert len(list(store.walk("kind==committed"))) == 7
    for ref, check in (
        (remote[BUSYBOX], "test ! -e /data/gone && test $(cat /data/keep) = keep"),
        (remote[DEBIAN], "test ! -e /etc/debian_version && dpkg-query -W dpkg >/dev/null"),
    ):
        res = stack.ctd.run(ref, f"c-{uuid.uuid4().hex[:10]}", snapshotter, "sh", "-ec", check)
        assert res.returncode == 0, res.stdout + res.stderr

    # containerd's garbage collection removes the layers through the proxy.
    ctr("images", "rm", "--sync", *remote.values())
    with Store(stack.servers[driver].root) as store:
        assert list(store.walk()) == [], stack.logs()
        assert store.check() == []


def _push(ctr, ref: str, tries: int = 3) -> None:
    """``ctr images push``; retried, since on a loaded machine a push can break off
    (``unexpected EOF`` between containerd's content store and the registry), which
    has nothing to do with the snapshotter."""
    for attempt in range(tries):
        try:
            ctr("images", "push", "--plain-http", ref)
            return
        except CtrError:
            if attempt == tries - 1:
                raise
