"""End-to-end tests: real containerd, runc and registry, with ``layerfs serve`` as snapshotter.

Each test gets its own containerd (private root, state, sockets, config)
with a proxy snapshotter ``layerfs-<driver>`` per driver it asks for, each
served by ``layerfs serve`` on its own store. Teardown deletes tasks and
containers, stops containerd, its shims and the servers, and unmounts what
is left, even when the test failed. They need root (containerd mounts);
without it they skip.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from stack import BUSYBOX, DEBIAN, Images, Stack

from layerfs.testing import oci
from layerfs.testing.containerd import (
    Containerd,
    kill_process_tree_matching,
    serving,
    unmount_under,
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (containerd mounts snapshots and runs runc)")
    for item in items:
        if "e2e" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    """The busybox and Debian test images as OCI tars (Debian's root is cached between runs)."""
    d = tmp_path_factory.mktemp("images")
    oci.write_image(d / "busybox.tar", BUSYBOX, oci.busybox_image_layers())
    debian = oci.debian_image_layers()
    oci.write_image(d / "debian.tar", DEBIAN, debian, cmd=["/bin/bash"])
    return Images(d / "busybox.tar", d / "debian.tar", oci.expected_tree(debian))


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[[list[str]], Stack]]:
    """``make_stack(drivers)`` starts servers and a containerd; all of it goes down after."""
    count = itertools.count()
    with contextlib.ExitStack() as exits:
        # Run last, whatever happened: nothing may stay mounted or running.
        exits.callback(kill_process_tree_matching, str(tmp_path))
        exits.callback(unmount_under, tmp_path)

        def make(drivers: list[str]) -> Stack:
            base = tmp_path / f"stack{next(count)}"
            # unix socket paths must stay under 108 bytes; pytest's are long
            sockets = Path(tempfile.mkdtemp(prefix="layerfs-e2e-", dir="/run"))
            exits.callback(shutil.rmtree, sockets, True)
            servers = exits.enter_context(serving(base / "layerfs", drivers, sockets))
            proxies = {f"layerfs-{d}": s.socket for d, s in servers.items()}
            ctd = Containerd(base / "containerd", proxies, sockets / "containerd.sock")
            exits.callback(ctd.stop)  # before the servers: its cleanup goes through them
            return Stack(ctd, servers, base)

        yield make
