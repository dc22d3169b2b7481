"""Helpers of the container tier's tests: filesystem types, and children with a reduced /dev."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from layerfs._sys import fsinfo

#: Set by tests/container/inside.sh: the tests run in the tier's container.
IN_CONTAINER = os.environ.get("LAYERFS_IN_CONTAINER") == "1"


def fs_name(path: Path) -> str:
    """The filesystem type of ``path`` ("overlay", "xfs", ...)."""
    return fsinfo.fs_type_name(fsinfo.fs_type(str(path)))


# A private mount namespace whose /dev is a fresh tmpfs holding copies of
# the current nodes minus the hidden ones: what a runtime does when it
# builds a container's /dev without those devices. The namespace, and
# every mount in it, ends with the child.
_HIDE_DEVICES = r"""
set -eu
new=$(mktemp -d)
mount -t tmpfs -o mode=755 layerfs-test-dev "$new"
for node in /dev/*; do
    name=${node#/dev/}
    [ -d "$node" ] && continue
    for pattern in $HIDE; do
        case $name in $pattern) continue 2 ;; esac
    done
    cp -a "$node" "$new/"
done
mount --move "$new" /dev
rmdir "$new"
exec "$@"
"""


def run_without_devices(hide: list[str], code: str, *args: str) -> dict[str, object]:
    """Run python ``code`` as a child whose /dev lacks the nodes matching ``hide``.

    ``code`` gets ``args`` in ``sys.argv[1:]`` and prints one JSON object,
    which is returned.
    """
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", _HIDE_DEVICES, "sh"]
        + [sys.executable, "-c", code, *args],
        env={**os.environ, "HIDE": " ".join(hide)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}): {proc.stderr}"
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
