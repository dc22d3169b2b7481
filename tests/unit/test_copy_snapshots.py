"""The shared snapshot suite against the ``copy`` driver."""

from layerfs.testing.suite import SnapshotSuite


class TestCopySnapshots(SnapshotSuite):
    driver = "copy"
    views_are_readonly = False
