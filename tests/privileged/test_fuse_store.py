"""The shared snapshot scenarios, run against the ``fuse`` driver (both data modes)."""

from __future__ import annotations

import os

import pytest

from layerfs.testing.suite import SnapshotSuite

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")


class TestFuseSnapshots(SnapshotSuite):
    driver = "fuse"


class TestFuseSnapshotsWriteback(SnapshotSuite):
    driver = "fuse"
    options = {"passthrough": "off"}
    chain_length = 32
