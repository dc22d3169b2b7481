"""Whole-tree operations on plain directories: copy and measure.

Copies keep everything a container image cares about: modes, owners,
timestamps, xattrs, hard links, symlinks, device nodes and fifos. File
data is shared by reflink where the filesystem can (``_sys.clone``).
Removal is ``_sys.tree.remove_tree``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ._sys.clone import copy_data
from ._sys.xattrs import UNSUPPORTED, copy_xattrs
from ._types import Usage


def copy_metadata(src: str, dst: str, st: os.stat_result) -> None:
    """Copy owner, mode, xattrs and times (in that order: chown clears setuid bits)."""
    if os.geteuid() == 0:
        os.lchown(dst, st.st_uid, st.st_gid)
    copy_xattrs(src, dst, tolerate=UNSUPPORTED)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_file(src: str, dst: str, st: os.stat_result) -> None:
    """Copy one regular file's data (reflink when possible) and metadata."""
    fd_in = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            copy_data(fd_in, fd_out, st.st_size)
        finally:
            os.close(fd_out)
    finally:
        os.close(fd_in)
    copy_metadata(src, dst, st)


def copy_node(src: str, dst: str, st: os.stat_result) -> None:
    """Create at ``dst`` a copy of the non-directory ``src`` (file, link, device, fifo)."""
    mode = st.st_mode
    if stat.S_ISREG(mode):
        copy_file(src, dst, st)
        return
    if stat.S_ISLNK(mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        os.mknod(dst, mode, st.st_rdev)
    elif stat.S_ISSOCK(mode):
        return  # sockets are not content; images never carry them
    copy_metadata(src, dst, st)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the tree at ``src`` into the existing empty directory ``dst``.

    Hard links inside the tree stay hard links. Directory times are set
    after their contents, so they survive the copy.
    """
    links: dict[tuple[int, int], str] = {}
    dirs: list[tuple[str, str, os.stat_result]] = []
    root_st = os.lstat(src)
    dirs.append((str(src), str(dst), root_st))
    for top, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(top, src)
        out_top = str(dst) if rel == "." else os.path.join(dst, rel)
        for name in dirnames + filenames:
            s = os.path.join(top, name)
            d = os.path.join(out_top, name)
            st = os.lstat(s)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(d, 0o700)
                dirs.append((s, d, st))
                continue
            if st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode):
                first = links.get((st.st_dev, st.st_ino))
                if first is not None:
                    os.link(first, d)
                    continue
                links[(st.st_dev, st.st_ino)] = d
            copy_node(s, d, st)
        # os.walk lists symlinks to directories in dirnames but does not follow them.
        dirnames[:] = [n for n in dirnames if not os.path.islink(os.path.join(top, n))]
    for s, d, st in reversed(dirs):
        if os.path.islink(d):
            continue
        copy_metadata(s, d, st)


def tree_usage(path: Path) -> Usage:
    """Bytes allocated and inodes used by the tree at ``path`` (hard links once)."""
    seen: set[tuple[int, int]] = set()
    size = 0
    inodes = 0
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Usage(0, 0)
    stack = [str(path)]
    size += st.st_blocks * 512
    inodes += 1
    while stack:
        top = stack.pop()
        try:
            entries = list(os.scandir(top))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the listing: a snapshot in use changes under the walk
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            if st.st_nlink > 1:
                seen.add(key)
            size += st.st_blocks * 512
            inodes += 1
            if stat.S_ISDIR(st.st_mode):
                stack.append(entry.path)
    return Usage(size=size, inodes=inodes)
