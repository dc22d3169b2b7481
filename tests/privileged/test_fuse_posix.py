"""POSIX behaviour of the fuse union, checked against kernel overlayfs on identical layers.

Every scenario runs once on a kernel overlay mount and once on a fuse
mount of a fresh copy of the same layers; both must return the same
results and errnos, end with the same visible tree, and leave upper dirs
that read the same (same whiteouts, same opaque markers).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from layerfs.drivers.fuse.testing import (
    build_sample_layers,
    fuse_mounted,
    overlay_mounted,
    tree,
    upper_tree,
)

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="no /dev/fuse")

Step = Callable[[Path], object]


def _try(fn: Step, root: Path) -> object:
    try:
        return ("ok", fn(root))
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno or 0, exc.errno))


def _read(p: Path) -> bytes:
    return p.read_bytes()


def _write(p: Path, data: bytes, flags: int = os.O_WRONLY | os.O_CREAT | os.O_TRUNC) -> int:
    fd = os.open(p, flags, 0o644)
    try:
        return os.write(fd, data)
    finally:
        os.close(fd)


def _stat(p: Path) -> tuple[int, int, int, int, int]:
    st = os.lstat(p)
    nlink = st.st_nlink if not os.path.isdir(p) else 0
    return (st.st_mode, st.st_uid, st.st_gid, st.st_size, nlink)


def _ls(p: Path) -> list[str]:
    return sorted(os.listdir(p))


#: A valid ``vfs_cap_data``: magic (revision 2, effective), CAP_NET_RAW permitted.
_CAPS = bytes.fromhex("01000002" + "00200000" + "00" * 12)

SCENARIOS: dict[str, list[Step]] = {
    "open_read": [
        lambda r: _read(r / "top"),
        lambda r: _read(r / "a" / "f1"),
        lambda r: _read(r / "a" / "f2"),
        lambda r: _read(r / "keep2"),
        lambda r: _read(r / "a"),
        lambda r: _ls(r / "a"),
        lambda r: _ls(r / "opq"),
        lambda r: _stat(r / "b" / "x"),
        lambda r: _stat(r / "h1"),
        lambda r: _stat(r / "fifo"),
    ],
    "creat_and_open_flags": [
        lambda r: _write(r / "new", b"new"),
        lambda r: _write(r / "new", b"x", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
        lambda r: _write(r / "top", b"+", os.O_WRONLY | os.O_APPEND),
        lambda r: _read(r / "top"),
        lambda r: _write(r / "a" / "f1", b"T", os.O_WRONLY | os.O_TRUNC),
        lambda r: _read(r / "a" / "f1"),
        lambda r: _write(r / "a" / "f2", b"back", os.O_WRONLY | os.O_CREAT),
        lambda r: _write(r / "nodir" / "f", b"x"),
        lambda r: _write(r / "a", b"x", os.O_WRONLY),
        lambda r: _ls(r / "a"),
    ],
    "truncate": [
        lambda r: os.truncate(r / "top", 2),
        lambda r: os.truncate(r / "a" / "f3", 100),
        lambda r: os.truncate(r / "a", 0),
        lambda r: os.truncate(r / "missing", 0),
        lambda r: _stat(r / "a" / "f3"),
    ],
    "unlink": [
        lambda r: os.unlink(r / "a" / "f1"),
        lambda r: os.unlink(r / "a" / "f1"),
        lambda r: os.unlink(r / "a"),
        lambda r: os.unlink(r / "h1"),
        lambda r: _stat(r / "h2"),
        lambda r: os.unlink(r / "ln"),
        lambda r: os.unlink(r / "fifo"),
        lambda r: _ls(r),
        lambda r: _write(r / "a" / "f1", b"again"),
        lambda r: _ls(r / "a"),
    ],
    "rmdir_mkdir": [
        lambda r: os.rmdir(r / "a"),
        lambda r: os.rmdir(r / "top"),
        lambda r: os.rmdir(r / "nothing"),
        lambda r: os.unlink(r / "keep" / "k"),
        lambda r: os.rmdir(r / "keep"),
        lambda r: os.mkdir(r / "keep"),
        lambda r: _ls(r / "keep"),
        lambda r: os.mkdir(r / "keep"),
        lambda r: os.mkdir(r / "top"),
        lambda r: os.mkdir(r / "nd", 0o750),
        lambda r: _stat(r / "nd"),
        lambda r: os.rmdir(r / "nd"),
        lambda r: os.rmdir(r / "opq" / "new"),
        lambda r: os.unlink(r / "opq" / "new"),
        lambda r: os.rmdir(r / "opq"),
        lambda r: _ls(r),
    ],
    "rename": [
        lambda r: os.rename(r / "a" / "f1", r / "a" / "g1"),
        lambda r: os.rename(r / "a" / "g1", r / "top"),
        lambda r: os.rename(r / "a", r / "a2"),
        lambda r: os.rename(r / "keep", r / "opq"),
        lambda r: os.rename(r / "missing", r / "x"),
        lambda r: os.mkdir(r / "d1"),
        lambda r: _write(r / "d1" / "f", b"f"),
        lambda r: os.rename(r / "d1", r / "d2"),
        lambda r: os.rename(r / "d2", r / "b"),
        lambda r: os.rename(r / "d2", r / "top"),
        lambda r: os.rename(r / "top", r / "d2"),
        lambda r: os.unlink(r / "b" / "x"),
        lambda r: os.rename(r / "d2", r / "b"),
        lambda r: _ls(r / "b"),
        lambda r: os.rename(r / "h1", r / "h2"),
        lambda r: _ls(r),
        lambda r: _ls(r / "a"),
    ],
    "link_symlink": [
        lambda r: os.link(r / "a" / "f3", r / "f3l"),
        lambda r: _stat(r / "f3l"),
        lambda r: _stat(r / "a" / "f3"),
        lambda r: os.link(r / "a", r / "al"),
        lambda r: os.link(r / "missing", r / "ml"),
        lambda r: os.link(r / "top", r / "a" / "f3"),
        lambda r: os.symlink("a/f3", r / "s1"),
        lambda r: os.readlink(r / "s1"),
        lambda r: os.readlink(r / "ln"),
        lambda r: os.readlink(r / "top"),
        lambda r: os.symlink("x", r / "ln"),
        lambda r: _read(r / "s1"),
    ],
    "chmod_chown_utimes": [
        lambda r: os.chmod(r / "a" / "f3", 0o600),
        lambda r: os.chown(r / "mode640", 12, 34),
        lambda r: os.chown(r / "ln", 5, 6, follow_symlinks=False),
        lambda r: os.utime(r / "top", ns=(1_000_000_000, 2_000_000_000)),
        lambda r: os.chmod(r / "a", 0o700),
        lambda r: os.chmod(r / "missing", 0o700),
        lambda r: _stat(r / "a" / "f3"),
        lambda r: _stat(r / "mode640"),
        lambda r: _stat(r / "ln"),
        lambda r: os.stat(r / "top").st_mtime_ns,
        lambda r: _stat(r / "a"),
    ],
    "mknod_special": [
        lambda r: os.mkfifo(r / "a" / "pipe", 0o640),
        lambda r: os.mknod(r / "cdev", 0o600 | 0o020000, os.makedev(1, 3)),
        lambda r: os.mknod(r / "a" / "f2", 0o600 | 0o010000),
        lambda r: os.mkfifo(r / "top"),
        lambda r: _stat(r / "a" / "pipe"),
        lambda r: _stat(r / "cdev"),
        lambda r: os.major(os.lstat(r / "cdev").st_rdev),
        lambda r: os.rename(r / "fifo", r / "fifo2"),
        lambda r: _ls(r / "a"),
    ],
    "xattr": [
        lambda r: os.getxattr(r / "xa", "user.color"),
        lambda r: os.getxattr(r / "xa", "user.none"),
        lambda r: os.setxattr(r / "xa", "user.size", b"L"),
        lambda r: sorted(os.listxattr(r / "xa")),
        lambda r: os.removexattr(r / "xa", "user.color"),
        lambda r: os.removexattr(r / "xa", "user.color"),
        lambda r: sorted(os.listxattr(r / "xa")),
        lambda r: os.setxattr(r / "a", "user.dir", b"d"),
        lambda r: os.getxattr(r / "a", "user.dir"),
        lambda r: os.setxattr(r / "top", "user.x", b"1", os.XATTR_REPLACE),
        lambda r: os.setxattr(r / "xa", "user.size", b"M", os.XATTR_CREATE),
        lambda r: sorted(os.listxattr(r / "opq")),
        lambda r: os.setxattr(r / "opq", "trusted.overlay.opaque", b"n"),
    ],
    # The union caches the absence of security.capability per inode (the
    # kernel probes it before every write and chown): setting, then the
    # kernel dropping it on write and chown, must still show through.
    "file_capabilities": [
        lambda r: _write(r / "capf", b"x"),
        lambda r: os.getxattr(r / "capf", "security.capability"),
        lambda r: os.setxattr(r / "capf", "security.capability", _CAPS),
        lambda r: os.getxattr(r / "capf", "security.capability"),
        lambda r: _write(r / "capf", b"y", os.O_WRONLY),
        lambda r: os.getxattr(r / "capf", "security.capability"),
        lambda r: os.setxattr(r / "capf", "security.capability", _CAPS),
        lambda r: os.chown(r / "capf", 7, 7),
        lambda r: os.getxattr(r / "capf", "security.capability"),
        lambda r: os.getxattr(r / "top", "security.capability"),
        lambda r: os.setxattr(r / "top", "security.capability", _CAPS),
        lambda r: os.getxattr(r / "top", "security.capability"),
        lambda r: _stat(r / "top"),
    ],
    "setgid_dirs": [
        lambda r: os.mkdir(r / "sg"),
        lambda r: os.chown(r / "sg", 0, 55),
        lambda r: os.chmod(r / "sg", 0o2775),
        lambda r: _write(r / "sg" / "f", b"f"),
        lambda r: _stat(r / "sg" / "f"),
        lambda r: _write(r / "sg" / "f", b"f", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
        lambda r: os.mkdir(r / "sg" / "d"),
        lambda r: os.mkdir(r / "sg" / "d"),
        lambda r: _stat(r / "sg" / "d"),
        lambda r: os.mkfifo(r / "sg" / "p"),
        lambda r: _stat(r / "sg" / "p"),
        lambda r: os.chown(r / "a", 0, 66),
        lambda r: os.chmod(r / "a", 0o2755),
        lambda r: _write(r / "a" / "n", b"n"),
        lambda r: _stat(r / "a" / "n"),
        lambda r: _write(r / "a" / "f3", b"n", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
        lambda r: os.unlink(r / "sg" / "f"),
        lambda r: _write(r / "sg" / "f", b"again", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
        lambda r: _stat(r / "sg" / "f"),
    ],
}


def _run(
    layers: dict[str, Path], root: Path, steps: list[Step], mounter
) -> tuple[list, dict, dict]:  # type: ignore[no-untyped-def]
    with mounter(layers, root):
        results = [_try(step, root) for step in steps]
        view = tree(root)
    return results, view, upper_tree(layers["upper"])


@pytest.mark.parametrize("passthrough", ["auto", "off"])
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_same_as_kernel_overlay(scenario: str, passthrough: str, tmp_path: Path) -> None:
    steps = SCENARIOS[scenario]
    ov_layers = build_sample_layers(tmp_path / "ov")
    fu_layers = build_sample_layers(tmp_path / "fu")
    ov = _run(ov_layers, tmp_path / "ov_m", steps, overlay_mounted)
    fu = _run(
        fu_layers,
        tmp_path / "fu_m",
        steps,
        lambda layers, root: fuse_mounted(layers, root, passthrough=passthrough),
    )
    for i, (a, b) in enumerate(zip(ov[0], fu[0], strict=True)):
        assert b == a, f"step {i} of {scenario}: overlay gave {a}, fuse gave {b}"
    assert fu[1] == ov[1], "visible trees differ"
    assert fu[2] == ov[2], "upper dirs differ"
