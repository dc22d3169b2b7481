"""Crash points for testing crash safety.

``crash_point("commit:marked")`` kills the process with SIGKILL when the
environment variable ``LAYERFS_CRASH_AT`` names that point, so a test can
run an operation in a child process, kill it at each step, reopen the
store and check that nothing was lost or half-written. Unset (always, in
production), it costs one comparison.
"""

from __future__ import annotations

import os
import signal

ENV = "LAYERFS_CRASH_AT"
_TARGET = os.environ.get(ENV)


def crash_point(name: str) -> None:
    """Die here, at once and without cleanup, if ``LAYERFS_CRASH_AT`` is ``name``."""
    if _TARGET is not None and _TARGET == name:
        os.kill(os.getpid(), signal.SIGKILL)
