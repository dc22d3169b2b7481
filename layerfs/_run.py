"""The one way layerfs runs external commands: ``run()``, with a timeout.

Every failure becomes ``CommandFailed`` carrying the command, exit status
and trimmed stderr, which drivers translate into ``layerfs.errors``.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

import sh

from . import errors


class CommandFailed(errors.LayerfsError):
    """An external command failed or timed out.

    Attributes:
        argv: the command and its arguments.
        exit_code: its exit status (None on timeout or when it is missing).
        stderr: its standard error, trimmed to the last 2,000 characters.
    """

    def __init__(self, argv: Sequence[str], exit_code: int | None, stderr: str) -> None:
        self.argv = list(argv)
        self.exit_code = exit_code
        self.stderr = stderr[-2000:].strip()
        status = "timed out" if exit_code is None else f"exited {exit_code}"
        super().__init__(f"{' '.join(self.argv)} {status}: {self.stderr}")


_TIMEOUT_EXIT = (124, 137)  # coreutils timeout: timed out, or killed after the grace period


def run(argv: Sequence[str], *, timeout: float = 60.0, input: str | bytes | None = None) -> str:
    """Run ``argv`` and return its standard output as text.

    The time limit is enforced by coreutils ``timeout`` around the command:
    ``sh``'s own ``_timeout`` watchdog polls and adds about 0.1 s to every
    call, which dominates drivers that run dmsetup a dozen times per
    snapshot, and its background mode can lose output.

    Raises:
        errors.Unsupported: the program is not installed.
        CommandFailed: non-zero exit, or ``timeout`` seconds passed.
    """
    program, *args = argv
    path = shutil.which(program)
    if path is None:
        raise errors.Unsupported(f"{program} is not installed (install it and retry)")
    limit = sh.Command("timeout").bake("--kill-after=5", f"{timeout:g}")
    try:
        return str(limit(path, *args, _in=input, _tty_out=False, _err_to_out=False))
    except sh.ErrorReturnCode as exc:
        if exc.exit_code in _TIMEOUT_EXIT:
            raise CommandFailed(argv, None, f"timed out after {timeout:g}s") from exc
        stderr = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else str(exc.stderr)
        )
        raise CommandFailed(argv, exc.exit_code, stderr) from exc
