"""Privileged tests need root on this kernel; elsewhere they skip, saying so."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (mounts, loop devices, device nodes)")
    for item in items:
        if "privileged" in str(item.fspath):
            item.add_marker(skip)
