"""Failure points for crash tests: die at a named step, like a power cut.

Setting ``LAYERFS_DM_FAULT=<step>`` in the environment makes the process
kill itself with SIGKILL when it reaches that step, so tests can prove
that reopening the store recovers from a crash between any two steps of a
dm transaction. Steps are ``<op>-<stage>``: ``create-journaled``,
``create-messaged``, ``create-bumped``, ``create-recorded``,
``create-suspended``, ``delete-journaled``, ... (``STEPS`` lists them).
"""

from __future__ import annotations

import os
import signal

__all__ = ["ENV", "STEPS", "point"]

ENV = "LAYERFS_DM_FAULT"

#: Every step a test can stop at.
STEPS = (
    "create-journaled",
    "create-suspended",
    "create-messaged",
    "create-bumped",
    "create-recorded",
    "create-activated",
    "base-formatting",
    "delete-journaled",
    "delete-messaged",
    "delete-bumped",
    "delete-recorded",
)


def point(step: str) -> None:
    """Kill this process with SIGKILL if ``LAYERFS_DM_FAULT`` names ``step``."""
    if os.environ.get(ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)
