"""Loop-backed scratch filesystems: one per bench column.

Each column (native, each driver) gets its own filesystem made for the
run: a sparse image file in the scratch directory, attached to a loop
device, formatted and mounted. Columns then never share a page cache or an
on-disk layout by accident, and destroying the image returns every byte.

Facts relied on:

- ``losetup --direct-io=on`` makes the loop driver read and write the
  image with O_DIRECT, so the image file's pages do not sit in the page
  cache twice (once for the loop file, once for the filesystem on top).
  The kernel only grants it when the loop's logical block size is a
  multiple of the backing filesystem's, hence ``--sector-size 4096``; the
  outcome is read back from ``/sys/block/loopN/loop/dio`` and reported.
- mkfs on a sparse file writes only metadata, so a large image costs
  nothing until used; ext4's lazy inode-table init keeps mkfs instant.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from layerfs import errors
from layerfs._environment import loop_device_problem
from layerfs._mounting import mount_one, unmount_path
from layerfs._run import CommandFailed, run
from layerfs._types import Mount

from .cleanup import Cleanup

FILESYSTEMS = ("ext4", "xfs", "btrfs")

_MKFS = {
    "ext4": ["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"],
    "xfs": ["mkfs.xfs", "-q", "-f", "-K"],
    "btrfs": ["mkfs.btrfs", "-q", "-f", "-K"],
}


@dataclasses.dataclass
class ScratchFs:
    """One mounted loop-backed filesystem.

    Attributes:
        name: the column it serves.
        fstype: ``ext4``, ``xfs`` or ``btrfs``.
        image: the sparse image file.
        device: the loop device (``/dev/loopN``).
        mountpoint: where the filesystem is mounted.
        direct_io: whether the loop device reads its image with O_DIRECT.
    """

    name: str
    fstype: str
    image: Path
    device: str
    mountpoint: Path
    direct_io: bool

    def used_bytes(self) -> int:
        """Return the bytes in use on the filesystem (statfs: total minus free)."""
        st = os.statvfs(self.mountpoint)
        return (st.f_blocks - st.f_bfree) * st.f_frsize


def loop_direct_io(device: str) -> bool:
    """Return True when ``device`` (``/dev/loopN``) does direct I/O on its image."""
    path = Path("/sys/block") / Path(device).name / "loop" / "dio"
    try:
        return path.read_text().strip() == "1"
    except OSError:
        return False


def attach_loop(image: Path, direct_io: bool = True) -> str:
    """Attach ``image`` to a free loop device, with direct I/O when the kernel allows.

    Returns:
        The device path.

    Raises:
        errors.Unsupported: losetup is missing or no loop device can be had.
    """
    problem = loop_device_problem()
    if problem is not None:
        raise errors.Unsupported(
            f"layerfs bench gives each column a loop-backed filesystem, but {problem}"
        )
    tries: list[list[str]] = []
    if direct_io:
        tries.append(["--sector-size", "4096", "--direct-io=on"])
        tries.append(["--direct-io=on"])
    tries.append([])
    last: Exception | None = None
    for extra in tries:
        try:
            return run(["losetup", "--find", "--show", *extra, str(image)], timeout=30).strip()
        except CommandFailed as exc:
            last = exc
    raise errors.Unsupported(
        f"cannot attach {image} to a loop device ({last}); is the loop module loaded?"
    )


def make_scratch_fs(
    cleanup: Cleanup, workdir: Path, name: str, fstype: str, size: int, direct_io: bool = True
) -> ScratchFs:
    """Create, format and mount a loop-backed filesystem under ``workdir``.

    Every step registers its undo with ``cleanup`` before the next starts.

    Args:
        cleanup: the run's cleanup registry.
        workdir: the scratch directory (image and mountpoint go below it).
        name: the column name (used in file names).
        fstype: one of ``FILESYSTEMS``.
        size: the image's apparent size in bytes (it is sparse).
        direct_io: ask for a direct-I/O loop device.

    Returns:
        The mounted filesystem.

    Raises:
        errors.InvalidArgument: ``fstype`` is not supported.
        errors.Unsupported: a tool is missing or the kernel refuses.
    """
    if fstype not in FILESYSTEMS:
        raise errors.InvalidArgument(
            f"--fs {fstype!r} is not supported; choose one of {', '.join(FILESYSTEMS)}"
        )
    image = workdir / f"{name}.img"
    mountpoint = workdir / name
    mountpoint.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as f:
        f.truncate(size)
    cleanup.push(f"remove {image}", lambda: image.unlink(missing_ok=True))
    device = attach_loop(image, direct_io)
    cleanup.push(f"detach {device}", lambda: _detach(device))
    try:
        run([*_MKFS[fstype], device], timeout=300)
    except CommandFailed as exc:
        raise errors.Unsupported(f"mkfs.{fstype} on {device} failed: {exc.stderr}") from exc
    # noinit_itable: no background inode-table zeroing to disturb the figures.
    options = ("noatime", "noinit_itable") if fstype == "ext4" else ("noatime",)
    mount_one(Mount(fstype, device, options), str(mountpoint))
    cleanup.push(f"unmount {mountpoint}", lambda: unmount_path(str(mountpoint), attempts=5))
    return ScratchFs(name, fstype, image, device, mountpoint, loop_direct_io(device))


def _detach(device: str) -> None:
    try:
        run(["losetup", "-d", device], timeout=30)
    except CommandFailed as exc:
        if "No such device" not in exc.stderr:
            raise


def needed_tools(fstype: str) -> list[str]:
    """Return the programs the scratch filesystems need that are not installed."""
    return [p for p in ("losetup", _MKFS.get(fstype, ["mkfs." + fstype])[0]) if not shutil.which(p)]
