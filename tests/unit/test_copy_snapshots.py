"""The shared snapshot suite against the ``copy`` driver."""

import os

from layerfs.testing.suite import SnapshotSuite


class TestCopySnapshots(SnapshotSuite):
    driver = "copy"
    # A read-only bind mount needs root; without it the plain directory is all there is.
    views_are_readonly = os.geteuid() == 0
