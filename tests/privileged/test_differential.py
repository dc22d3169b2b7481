"""Every driver against the reference model of layer application (root: overlay, fuse).

Random stacks of 1-6 layers go on copy, overlay, fuse and fuse without
passthrough; each mounted tree is compared with the model, then each
store's exports are applied on every other store and compared again.
``LAYERFS_DIFF_EXAMPLES`` sets how many stacks Hypothesis tries.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

import layerfs
from layerfs.testing.differential import Differential, clear, layer_stacks, with_regressions
from layerfs.testing.suite import _unmount_everything

EXAMPLES = int(os.environ.get("LAYERFS_DIFF_EXAMPLES", "100"))
DRIVERS = {
    "copy": ("copy", {}),
    "overlay": ("overlay", {}),
    "fuse": ("fuse", {}),
    "fuse-nopassthrough": ("fuse", {"passthrough": "off"}),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, layerfs.Store]]:
    base = tmp_path_factory.mktemp("differential")
    opened: dict[str, layerfs.Store] = {}
    try:
        for name, (driver, options) in DRIVERS.items():
            opened[name] = layerfs.Store(Path(base, name), driver=driver, options=options)
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
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@with_regressions  # the table and what Hypothesis found; each failed once
@given(stack=layer_stacks())
def test_every_driver_matches_the_model(stores: dict[str, layerfs.Store], stack: list) -> None:
    Differential(stores, privileged=True).check(stack)
