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
from hypothesis import given

import layerfs
from layerfs.testing.differential import (
    TABLE_ROWS,
    Differential,
    differential_settings,
    layer_stacks,
    open_stores,
    with_stacks,
)

EXAMPLES = int(os.environ.get("LAYERFS_DIFF_EXAMPLES_VM", "5"))
DM_OPTIONS = {"data_size": "1G", "base_size": "64M", "min_free_percent": "1", "udev": "off"}


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[dict[str, layerfs.Store]]:
    specs = {"devmapper": ("devmapper", DM_OPTIONS), "copy": ("copy", {})}
    with open_stores(tmp_path, specs) as opened:
        yield opened


@differential_settings(EXAMPLES, database=None)  # the checkout is read-only inside the VM
@with_stacks(TABLE_ROWS)  # every regression runs in the privileged tier; dm is slow
@given(stack=layer_stacks())
def test_devmapper_matches_the_model(stores: dict[str, layerfs.Store], stack: list) -> None:
    Differential(stores, privileged=True).check(stack)
