"""The multi-process workload of ``layerfs.testing.stress`` on devmapper.

Fewer operations than on the host drivers (every dmsetup call costs about
0.3 s in the emulated VM): ``LAYERFS_STRESS_DM_OPS`` (default 120). The
numbers are printed (``-s``) and written to ``$LAYERFS_STRESS_JSON`` when set.
"""

from __future__ import annotations

import os
from pathlib import Path

from layerfs.testing.stress import run_stress

OPS = int(os.environ.get("LAYERFS_STRESS_DM_OPS", "120"))
OPTIONS = {"data_size": "1G", "base_size": "64M", "min_free_percent": "0", "udev": "off"}


def test_many_processes_on_one_devmapper_store(tmp_path: Path) -> None:
    report = run_stress(
        tmp_path / "store", "devmapper", processes=8, operations=OPS, options=OPTIONS
    )
    report.log()
    assert report.operations >= OPS
    assert report.failures == []
    assert report.problems == []
    assert report.outcomes.get("commit:ok", 0) > 0 and report.outcomes.get("apply:ok", 0) > 0
