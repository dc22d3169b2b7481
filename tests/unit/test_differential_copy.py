"""The ``copy`` driver against the reference model of layer application, without root.

The privileged tier runs the same comparison over every driver; this one
needs no privileges, so it runs wherever the unit tests do. Two copy
stores stand in for "another driver" when exports are applied again.
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

EXAMPLES = int(os.environ.get("LAYERFS_DIFF_EXAMPLES", "200"))


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, layerfs.Store]]:
    specs = {name: ("copy", {}) for name in ("one", "two")}
    with open_stores(tmp_path_factory.mktemp("differential-copy"), specs) as opened:
        yield opened


@differential_settings(EXAMPLES)
@with_regressions
@given(stack=layer_stacks())
def test_copy_matches_the_model(stores: dict[str, layerfs.Store], stack: list) -> None:
    Differential(stores, privileged=os.geteuid() == 0).check(stack)
