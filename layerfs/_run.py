"""The one way layerfs runs external commands: ``run()``, with a timeout.

Every failure becomes ``CommandFailed`` carrying the command, exit status
and trimmed stderr, which drivers translate into ``layerfs.errors``.
Commands run under ``LC_ALL=C``: drivers read their messages (dmsetup's
strerror text says which errno it hit), and a translated message would
turn ``AlreadyExists`` or ``NotFound`` into an unknown error.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
from collections.abc import Callable, Sequence

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


def _alarm_in(seconds: float) -> Callable[[], None]:
    """A pre-exec hook arming SIGALRM in the child: the kernel keeps it across exec."""
    whole = max(1, math.ceil(seconds))

    def arm() -> None:
        signal.alarm(whole)

    return arm


def command_env() -> dict[str, str]:
    """The environment external commands run with: ours, in the C locale."""
    env = {k: v for k, v in os.environ.items() if k != "LANGUAGE"}
    env["LC_ALL"] = "C"
    return env


def run(argv: Sequence[str], *, timeout: float = 60.0, input: str | bytes | None = None) -> str:
    """Run ``argv`` and return its standard output as text.

    The time limit is an alarm set in the child before exec (whole seconds,
    rounded up): the command dies of SIGALRM when it overruns. ``sh``'s own
    ``_timeout`` watchdog polls and adds about 0.1 s to every call, and a
    wrapper such as coreutils ``timeout`` costs one more exec per call;
    both add up in drivers that run dmsetup a dozen times per snapshot.

    Raises:
        errors.Unsupported: the program is not installed.
        CommandFailed: non-zero exit, or ``timeout`` seconds passed.
    """
    program, *args = argv
    path = shutil.which(program)
    if path is None:
        raise errors.Unsupported(f"{program} is not installed (install it and retry)")
    command = sh.Command(path)
    try:
        return str(
            command(
                *args,
                _in=input,
                _tty_out=False,
                _err_to_out=False,
                _preexec_fn=_alarm_in(timeout),
                _env=command_env(),
            )
        )
    except sh.ErrorReturnCode as exc:
        if exc.exit_code == -signal.SIGALRM:
            raise CommandFailed(argv, None, f"timed out after {timeout:g}s") from exc
        stderr = (
            exc.stderr.decode(errors="replace")
            if isinstance(exc.stderr, bytes)
            else str(exc.stderr)
        )
        raise CommandFailed(argv, exc.exit_code, stderr) from exc
