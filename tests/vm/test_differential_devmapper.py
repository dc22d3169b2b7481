"""devmapper against the reference model of layer application (a few stacks: dm is slow).

The same comparison as tests/privileged/test_differential.py, with a copy
store as the other driver that exports are applied on.
``LAYERFS_DIFF_EXAMPLES_VM`` sets how many stacks Hypothesis tries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import layerfs
from layerfs.testing.differential import (
    TABLE_ROWS,
    Differential,
    clear,
    layer_stacks,
    with_stacks,
)
from layerfs.testing.suite import _unmount_everything

EXAMPLES = int(os.environ.get("LAYERFS_DIFF_EXAMPLES_VM", "5"))
DM_OPTIONS = {"data_size": "1G", "base_size": "64M", "min_free_percent": "1", "udev": "off"}


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, layerfs.Store]]:
    opened: dict[str, layerfs.Store] = {}
    try:
        opened["devmapper"] = layerfs.Store(tmp_path / "dm", driver="devmapper", options=DM_OPTIONS)
        opened["copy"] = layerfs.Store(tmp_path / "copy", driver="copy")
        yield opened
    finally:
        for store in opened.values():
            _unmount_everything(store)
            clear(store)
            problems = store.check()
            store.close()
            assert not problems, problems


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # the checkout is read-only inside the VM
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@with_stacks(TABLE_ROWS)  # every regression runs in the privileged tier; dm is slow
@given(stack=layer_stacks())
def test_devmapper_matches_the_model(stores: dict[str, layerfs.Store], stack: list) -> None:
    Differential(stores, privileged=True).check(stack)
