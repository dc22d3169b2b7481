"""Leave nothing behind: the bench's cleanup registry and signal handling.

Everything a run creates outside plain files (mounts, loop devices, FUSE
servers, device-mapper devices) lives under one scratch directory or
carries one name prefix, and is undone two ways:

1. Each creator registers an undo step (``Cleanup.push``); the steps run
   last-in first-out when the run ends, however it ends.
2. A final sweep (``sweep``) then looks at the kernel's own tables and
   removes whatever is still there: mounts below the scratch directory
   (lazy detach, deepest first, which also ends FUSE servers: a server
   whose connection goes away reads ENODEV and exits), loop devices
   whose backing file is below it, and dm devices built on those loop
   devices (a thin pool on loop files, thin volumes in that pool).
   The sweep catches what a crash between "create" and "register" missed.

SIGTERM and SIGHUP are turned into ``KeyboardInterrupt`` like SIGINT, so
``try/finally`` blocks run for all three; while cleanup runs, further
signals are ignored so a second Ctrl-C cannot cut it short.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from layerfs._mounting import unmount_path
from layerfs._run import run
from layerfs._sys.mount import mountinfo

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclasses.dataclass
class _Step:
    what: str
    fn: Callable[[], None]


class Cleanup:
    """A last-in first-out list of undo steps, plus a sweep of one scratch directory.

    Args:
        scratch: the directory everything of the run lives under.
        dm_prefix: name prefix of the dm devices the run may create.
    """

    def __init__(self, scratch: Path, dm_prefix: str = "") -> None:
        self.scratch = Path(os.path.realpath(scratch))
        self.dm_prefix = dm_prefix
        self._steps: list[_Step] = []
        self.problems: list[str] = []

    def push(self, what: str, fn: Callable[[], None]) -> _Step:
        """Register ``fn`` (described by ``what``) to run at cleanup; returns a token."""
        step = _Step(what, fn)
        self._steps.append(step)
        return step

    def discard(self, token: _Step) -> None:
        """Forget a step without running it (its resource is already gone)."""
        with contextlib.suppress(ValueError):
            self._steps.remove(token)

    def release(self, token: _Step) -> None:
        """Run one step now and forget it.

        Raises:
            Exception: whatever the step raises (it is forgotten anyway).
        """
        self.discard(token)
        token.fn()

    def __len__(self) -> int:
        return len(self._steps)

    def run_all(self) -> list[str]:
        """Run every step, newest first, then sweep; never raises.

        Returns:
            One line per step that failed (also kept in ``problems``).
        """
        with ignore_signals():
            while self._steps:
                step = self._steps.pop()
                try:
                    step.fn()
                except Exception as exc:  # noqa: BLE001 - cleanup must go on
                    self.problems.append(f"{step.what}: {exc}")
            self.problems.extend(sweep(self.scratch, self.dm_prefix))
        return list(self.problems)


def mounts_below(scratch: Path) -> list[str]:
    """Return mount targets at or below ``scratch``, deepest (most recent) first."""
    base = os.path.realpath(scratch)
    prefix = base.rstrip("/") + "/"
    found = [m.target for m in mountinfo() if m.target == base or m.target.startswith(prefix)]
    return list(reversed(found))


def loops_below(scratch: Path) -> list[str]:
    """Return loop devices (``/dev/loopN``) whose backing file is below ``scratch``."""
    prefix = os.path.realpath(scratch).rstrip("/") + "/"
    out: list[str] = []
    for entry in sorted(Path("/sys/block").glob("loop*")):
        try:
            backing = (entry / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(prefix):
            out.append(f"/dev/{entry.name}")
    return out


def dm_devices_on(
    loops: list[str], prefix: str = "", sysfs: Path = Path("/sys/block")
) -> list[str]:
    """Return dm devices built on ``loops`` (directly or through other dm devices).

    Also those whose name starts with ``prefix`` (when given). Devices come
    holders first (thin volumes before their pool), the order to remove them.
    Read from sysfs (``/sys/block/dm-N/slaves``, ``holders``, ``dm/name``),
    so it needs no dmsetup.
    """
    nodes: dict[str, tuple[str, set[str], set[str]]] = {}
    for entry in sysfs.glob("dm-*"):
        try:
            name = (entry / "dm" / "name").read_text().strip()
            slaves = {p.name for p in (entry / "slaves").iterdir()}
            holders = {p.name for p in (entry / "holders").iterdir()}
        except OSError:
            continue
        nodes[entry.name] = (name, slaves, holders)
    ours = {Path(dev).name for dev in loops}
    mine: set[str] = {k for k, (name, _, _) in nodes.items() if prefix and name.startswith(prefix)}
    changed = True
    while changed:
        changed = False
        for k, (_, slaves, _) in nodes.items():
            if k not in mine and slaves & (ours | mine):
                mine.add(k)
                changed = True
    order: list[str] = []
    left = set(mine)
    while left:
        free = sorted(k for k in left if not (nodes[k][2] & left))
        if not free:  # a cycle cannot happen; take them in any order
            free = sorted(left)
        for k in free:
            order.append(nodes[k][0])
            left.discard(k)
    return order


def sweep(scratch: Path, dm_prefix: str = "") -> list[str]:
    """Remove every mount, loop device and dm device the run left (see module doc).

    Returns:
        One line per thing that could not be removed.
    """
    problems: list[str] = []
    for _ in range(3):  # a lazy detach can uncover a mount stacked below it
        targets = mounts_below(scratch)
        if not targets:
            break
        for target in targets:
            try:
                unmount_path(target, attempts=5)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"unmount {target}: {exc}")
    for name in dm_devices_on(loops_below(scratch), dm_prefix):
        try:
            run(["dmsetup", "remove", "--retry", name], timeout=60)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"dmsetup remove {name}: {exc}")
    for dev in loops_below(scratch):
        try:
            run(["losetup", "-d", dev], timeout=30)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"losetup -d {dev}: {exc}")
    return problems


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into ``KeyboardInterrupt`` inside the block."""
    old = {sig: signal.signal(sig, _raise_interrupt) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def ignore_signals() -> Iterator[None]:
    """Ignore SIGINT, SIGTERM and SIGHUP inside the block (so cleanup finishes)."""
    try:
        old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _SIGNALS}
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """End a child process the run started: SIGTERM, then SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)
