"""Helpers for tests and benchmarks of the fuse union: sample layers, mounts, tree dumps.

Not used by the driver itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from layerfs._sys import mount as sysmount

from . import launch
from .fs import Config

__all__ = [
    "build_sample_layers",
    "fuse_mounted",
    "overlay_mounted",
    "tree",
    "upper_tree",
]


def _write(path: Path, data: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    os.chmod(path, mode)


def build_sample_layers(base: Path, prefix: str = "trusted.") -> dict[str, Path]:
    """Make two lower layers (``l1`` over ``l2``), an empty ``upper`` and a ``work`` dir.

    The lowers hold regular files, a merged directory, a whiteout, an opaque
    directory, a symlink, a fifo, a hard link pair and xattrs.

    Returns:
        ``{"l1":..., "l2":..., "upper":..., "work":...}``.
    """
    l1, l2, up, work = (base / n for n in ("l1", "l2", "upper", "work"))
    for d in (l1, l2, up, work):
        d.mkdir(parents=True)
    # bottom layer
    _write(l2 / "a" / "f1", "one\n")
    _write(l2 / "a" / "f2", "two\n")
    _write(l2 / "a" / "sub" / "deep", "deep\n")
    _write(l2 / "b" / "x", "x\n", 0o600)
    _write(l2 / "top", "top-l2\n")
    _write(l2 / "opq" / "old", "old\n")
    _write(l2 / "keep" / "k", "k\n")
    _write(l2 / "mode640", "m\n", 0o640)
    _write(l2 / "h1", "hard\n")
    os.link(l2 / "h1", l2 / "h2")
    os.symlink("top", l2 / "ln")
    os.mkfifo(l2 / "fifo", 0o644)
    _write(l2 / "xa", "xattr\n")
    os.setxattr(l2 / "xa", "user.color", b"blue")
    os.lchown(l2 / "b" / "x", 1000, 1000)
    # middle layer
    _write(l1 / "a" / "f3", "three\n")
    os.mknod(l1 / "a" / "f2", stat.S_IFCHR, os.makedev(0, 0))
    _write(l1 / "top", "top-l1\n")
    (l1 / "opq").mkdir()
    os.setxattr(l1 / "opq", prefix + "overlay.opaque", b"y")
    _write(l1 / "opq" / "new", "new\n")
    os.mknod(l1 / "keep2", stat.S_IFCHR, os.makedev(0, 0))
    return {"l1": l1, "l2": l2, "upper": up, "work": work}


@contextlib.contextmanager
def fuse_mounted(
    layers: dict[str, Path],
    target: Path,
    *,
    readonly: bool = False,
    passthrough: str = "auto",
    threads: int = 2,
    stats_file: str | None = None,
    prefix: str = "trusted.",
) -> Iterator[launch.ServerInfo]:
    """Mount the fuse union of ``layers`` on ``target`` for the ``with`` block."""
    target.mkdir(parents=True, exist_ok=True)
    cfg = Config(
        lowers=[str(layers["l1"]), str(layers["l2"])],
        upper=None if readonly else str(layers["upper"]),
        work=None if readonly else str(layers["work"]),
        xattr_prefix=prefix,
        passthrough=passthrough,
        threads=threads,
    )
    info = launch.start(cfg, str(target), stats_file=stats_file)
    try:
        yield info
    finally:
        launch.stop(str(target), info, info.connection)


@contextlib.contextmanager
def overlay_mounted(
    layers: dict[str, Path], target: Path, *, readonly: bool = False, prefix: str = "trusted."
) -> Iterator[None]:
    """Mount kernel overlayfs (index=off, redirect_dir=off, metacopy=off) of ``layers``."""
    target.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={layers['l1']}:{layers['l2']}"
    if not readonly:
        opts += f",upperdir={layers['upper']},workdir={layers['work']}"
    opts += ",index=off,redirect_dir=off,metacopy=off,xino=off"
    if prefix == "user.":
        opts += ",userxattr"
    sysmount.mount("overlay", str(target), "overlay", 0, opts)
    try:
        yield
    finally:
        sysmount.umount(str(target), sysmount.MNT_DETACH)


def _entry(path: str, st: os.stat_result, with_nlink: bool) -> tuple[object, ...]:
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFREG:
        with open(path, "rb") as f:
            content: object = hashlib.sha256(f.read()).hexdigest()[:16]
    elif fmt == stat.S_IFLNK:
        content = os.readlink(path)
    elif fmt == stat.S_IFCHR or fmt == stat.S_IFBLK:
        content = (os.major(st.st_rdev), os.minor(st.st_rdev))
    else:
        content = None
    try:
        xattrs = sorted(
            (n, os.getxattr(path, n, follow_symlinks=False))
            for n in os.listxattr(path, follow_symlinks=False)
            if n.startswith("user.") or n.endswith("overlay.opaque")
        )
    except OSError:
        xattrs = []
    size = st.st_size if fmt != stat.S_IFDIR else None
    nlink = st.st_nlink if with_nlink and fmt != stat.S_IFDIR else None
    return (
        fmt,
        stat.S_IMODE(st.st_mode),
        st.st_uid,
        st.st_gid,
        size,
        content,
        tuple(xattrs),
        nlink,
    )


def tree(root: Path, with_nlink: bool = True) -> dict[str, tuple[object, ...]]:
    """Describe every object under ``root``: type, mode, owner, size, content, xattrs, nlink."""
    out: dict[str, tuple[object, ...]] = {}
    top = str(root)
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, top)] = _entry(path, os.lstat(path), with_nlink)
    return out


def upper_tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Describe an upper dir as overlay reads it (whiteouts and opaque markers included)."""
    return tree(root, with_nlink=False)
