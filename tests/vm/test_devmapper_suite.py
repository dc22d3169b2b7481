"""The shared snapshot scenarios against devmapper on a loop-backed pool."""

from __future__ import annotations

from typing import ClassVar

from layerfs.testing.suite import SnapshotSuite


class TestDevmapperExt4(SnapshotSuite):
    driver = "devmapper"
    options: ClassVar[dict[str, str]] = {
        "data_size": "1G",
        "base_size": "64M",
        "min_free_percent": "1",
        # udev processing dominates under emulation; test_udev_modes covers it.
        "udev": "off",
    }
    # Under emulation a view costs about eight dmsetup calls; the long
    # chain is still built in full.
    chain_check_every: ClassVar[int] = 16
