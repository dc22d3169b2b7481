"""Suite-wide guard: no test may leave a mount, loop device or FUSE server behind.

Tests keep their scratch files under pytest's ``tmp_path``; the guard
looks for anything still mounted, attached or running from there when
the session ends.

Hypothesis explores new random examples on every run at a desk; under CI
(``CI`` set) it runs a fixed sequence, so a landing is judged on the same
examples each time, and a new counterexample found at a desk becomes a
saved regression example instead of a CI run that fails by chance.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def _mounts(base: str) -> set[str]:
    with open("/proc/self/mounts") as f:
        return {line.split()[1] for line in f if line.split()[1].startswith(base)}


def _loops(base: str) -> set[str]:
    try:
        out = subprocess.run(["losetup", "-a"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    return {line for line in out.splitlines() if base in line}


def _fuse_servers(base: str) -> set[str]:
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited while we looked
        if base in args and "pytest" not in args:
            found.add(f"{proc.name} {args.strip()}")
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the run if mounts, loop devices or servers from the tests outlive them."""
    base = str(Path(tmp_path_factory.getbasetemp()).resolve())
    yield
    leaks = {
        "mounts": _mounts(base),
        "loop devices": _loops(base),
        "processes": _fuse_servers(base),
    }
    found = [f"{what}: {sorted(items)}" for what, items in leaks.items() if items]
    assert not found, "tests left resources behind: " + "; ".join(found)
