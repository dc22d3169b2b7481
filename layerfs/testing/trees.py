"""Describe a directory tree as plain data, to compare snapshots with reference directories."""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

SKIP_TOP_LEVEL = frozenset({"lost+found"})
_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")


def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    out = []
    for n in sorted(names):
        if n.startswith(_OVERLAY_XATTRS) or n.startswith("security."):
            continue
        try:
            out.append((n, os.getxattr(path, n, follow_symlinks=False)))
        except OSError:
            continue
    return tuple(out)


def describe(root: str | os.PathLike[str], *, mtimes: bool = False) -> dict[str, Any]:
    """Map every path below ``root`` to its type, mode, owner, content digest and xattrs.

    Hard links appear as ``("link-group", first path)`` next to the file's
    description, so link structure is compared too. ``mtimes`` adds file
    modification times in whole seconds (what a layer tar keeps).
    """
    root = str(root)
    out: dict[str, Any] = {}
    inodes: dict[tuple[int, int], str] = {}
    for top, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_top = os.path.relpath(top, root)
        for name in sorted(dirnames + filenames):
            rel = name if rel_top == "." else f"{rel_top}/{name}"
            if rel in SKIP_TOP_LEVEL:
                continue
            path = os.path.join(top, name)
            st = os.lstat(path)
            mode = st.st_mode
            desc: list[Any] = [stat.S_IFMT(mode), stat.S_IMODE(mode), st.st_uid, st.st_gid]
            if stat.S_ISREG(mode):
                with open(path, "rb") as f:
                    desc.append(hashlib.sha256(f.read()).hexdigest())
                key = (st.st_dev, st.st_ino)
                desc.append(("link-group", inodes.setdefault(key, rel)))
                if mtimes:
                    desc.append(st.st_mtime_ns // 1_000_000_000)
            elif stat.S_ISLNK(mode):
                desc.append(os.readlink(path))
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                desc.append(st.st_rdev)
            desc.append(_xattrs(path))
            out[rel] = tuple(desc)
        dirnames[:] = [
            d
            for d in dirnames
            if not (rel_top == "." and d in SKIP_TOP_LEVEL)
            and not os.path.islink(os.path.join(top, d))
        ]
    return out


def diff_descriptions(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Human-readable differences between two ``describe`` results (empty when equal)."""
    lines = []
    for path in sorted(a.keys() | b.keys()):
        if a.get(path) != b.get(path):
            lines.append(f"{path}: {a.get(path)!r} != {b.get(path)!r}")
    return lines
