"""Every driver against the reference model of layer application (root: overlay, fuse).

Random stacks of 1-6 layers go on copy, overlay, fuse and fuse without
passthrough; each mounted tree is compared with the model, then each
store's exports are applied on every other store and compared again.
``LAYERFS_DIFF_EXAMPLES`` sets how many stacks Hypothesis tries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import given

import layerfs
from layerfs.testing.differential import (
    Differential,
    differential_settings,
    layer_stacks,
    open_stores,
    with_regressions,
)

EXAMPLES = int(os.environ.get("LAYERFS_DIFF_EXAMPLES", "100"))
DRIVERS = {
    "copy": ("copy", {}),
    "overlay": ("overlay", {}),
    "fuse": ("fuse", {}),
    "fuse-nopassthrough": ("fuse", {"passthrough": "off"}),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, layerfs.Store]]:
    with open_stores(tmp_path_factory.mktemp("differential"), DRIVERS) as opened:
        yield opened


@differential_settings(EXAMPLES)
@with_regressions  # the table and what Hypothesis found; each failed once
@given(stack=layer_stacks())
def test_every_driver_matches_the_model(stores: dict[str, layerfs.Store], stack: list) -> None:
    Differential(stores, privileged=True).check(stack)
