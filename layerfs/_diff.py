"""Changes between a layer and its parent, two ways.

``compare_trees`` walks the parent's and the snapshot's full trees side by
side (any driver). ``scan_diff_dir`` reads an overlay upper directory
alone (``overlay``, ``fuse``): it touches only what changed, which is why
native diff is many times faster on big images.

Both yield ``DiffEntry`` values in sorted path order, parents before their
children, which the exporter turns into tar entries and ``changes()``
into ``Change`` values.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from ._overlayfmt.lower import merged_entries
from ._overlayfmt.marks import is_image_xattr, is_opaque, is_whiteout
from ._sys.xattrs import ANY, read_xattrs
from ._types import ChangeKind

#: Never exported: the lost+found a fresh ext4 carries at its root.
SKIP_TOP_LEVEL = frozenset({"lost+found"})


@dataclasses.dataclass(frozen=True)
class DiffEntry:
    """One changed path.

    Attributes:
        kind: add, modify or delete.
        path: relative path, '/'-separated.
        source: where to read the new entry from (None for deletes).
        opaque: a directory that hides everything below it in the parent.
    """

    kind: ChangeKind
    path: str
    source: str | None
    opaque: bool = False


def image_xattrs(path: str) -> dict[str, bytes]:
    """The xattrs of ``path`` an image carries (overlay's own left out; unreadable ones too)."""
    return read_xattrs(path, keep=is_image_xattr, tolerate=ANY)


def same_entry(a_path: str, a: os.stat_result, b_path: str, b: os.stat_result) -> bool:
    """True when two entries look identical (type, mode, owner, size, times, target, xattrs)."""
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return False
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISDIR(a.st_mode):
        if a.st_mtime_ns != b.st_mtime_ns:
            return False
    elif stat.S_ISLNK(a.st_mode):
        if os.readlink(a_path) != os.readlink(b_path):
            return False
    elif stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        if a.st_rdev != b.st_rdev:
            return False
    elif stat.S_ISREG(a.st_mode):
        # A changed link count means the hard-link structure changed: the
        # file must be exported again so the new name can link to it.
        if (a.st_size, a.st_mtime_ns, a.st_nlink) != (b.st_size, b.st_mtime_ns, b.st_nlink):
            return False
        # Whole-second times are what layer tars carry: two versions of a
        # file from two layers often share size and mtime, so only the
        # bytes can tell them apart (containerd compares them in this case too).
        if a.st_mtime_ns % 1_000_000_000 == 0 and not _same_bytes(a_path, b_path):
            return False
    return image_xattrs(a_path) == image_xattrs(b_path)


def _same_bytes(a_path: str, b_path: str) -> bool:
    with open(a_path, "rb") as a, open(b_path, "rb") as b:
        while True:
            x = a.read(1 << 20)
            if x != b.read(1 << 20):
                return False
            if not x:
                return True


def _scandir(path: str) -> dict[str, os.DirEntry[str]]:
    try:
        return {e.name: e for e in os.scandir(path)}
    except (FileNotFoundError, NotADirectoryError):
        return {}


def _all_below(root: str, rel: str) -> Iterator[DiffEntry]:
    for name, entry in sorted(_scandir(os.path.join(root, rel)).items()):
        sub = f"{rel}/{name}" if rel else name
        yield DiffEntry(ChangeKind.ADD, sub, entry.path)
        if entry.is_dir(follow_symlinks=False):
            yield from _all_below(root, sub)


def compare_trees(old_root: Path | None, new_root: Path) -> Iterator[DiffEntry]:
    """Yield the changes that turn the tree ``old_root`` (None: empty) into ``new_root``.

    A file that changed and has other names in the new tree brings those
    names along, even if they did not change themselves: a layer tar can
    only put names into one link group by linking them to a file it holds.
    """
    old = str(old_root) if old_root is not None else None
    new = str(new_root)
    #: (dev, ino) -> the new tree's names, for files with several names.
    names: dict[tuple[int, int], list[str]] = {}

    def note(sub: str, st: os.stat_result) -> None:
        if st.st_nlink > 1 and stat.S_ISREG(st.st_mode):
            names.setdefault((st.st_dev, st.st_ino), []).append(sub)

    def below(rel: str) -> Iterator[DiffEntry]:
        for entry in _all_below(new, rel):
            assert entry.source is not None
            note(entry.path, os.lstat(entry.source))
            yield entry

    def walk(rel: str) -> Iterator[DiffEntry]:
        old_entries = _scandir(os.path.join(old, rel)) if old is not None else {}
        new_entries = _scandir(os.path.join(new, rel))
        for name in sorted(old_entries.keys() | new_entries.keys()):
            if not rel and name in SKIP_TOP_LEVEL:
                continue
            sub = f"{rel}/{name}" if rel else name
            o = old_entries.get(name)
            n = new_entries.get(name)
            if n is None:
                yield DiffEntry(ChangeKind.DELETE, sub, None)
                continue
            n_st = n.stat(follow_symlinks=False)
            note(sub, n_st)
            n_dir = stat.S_ISDIR(n_st.st_mode)
            if o is None:
                yield DiffEntry(ChangeKind.ADD, sub, n.path)
                if n_dir:
                    yield from below(sub)
                continue
            o_st = o.stat(follow_symlinks=False)
            o_dir = stat.S_ISDIR(o_st.st_mode)
            if not same_entry(o.path, o_st, n.path, n_st):
                yield DiffEntry(ChangeKind.MODIFY, sub, n.path)
            if n_dir and o_dir:
                yield from walk(sub)
            elif n_dir:
                yield from below(sub)

    changes = list(walk(""))
    if not names:
        yield from changes
        return
    listed = {c.path for c in changes}
    inode_of = {p: key for key, paths in names.items() for p in paths}
    extra = []
    for key in {inode_of[c.path] for c in changes if c.path in inode_of}:
        for path in names[key]:
            if path not in listed:
                extra.append(DiffEntry(ChangeKind.MODIFY, path, os.path.join(new, path)))
    if not extra:
        yield from changes
        return
    yield from sorted(changes + extra, key=lambda c: c.path.split("/"))


def scan_diff_dir(upper: Path, lowers: Sequence[Path], opaque_xattr: str) -> Iterator[DiffEntry]:
    """Yield the changes recorded in the overlay upper directory ``upper``.

    ``lowers`` (the parents' upper directories, nearest first) are read
    only to tell *add* from *modify*, to list what an opaque directory
    hides, and to leave out directories that were copied up but did not
    change (so the result matches a full-tree comparison); file contents
    are never compared. Each lower directory is listed once.
    """
    root = str(upper)

    def walk(rel: str, parts: list[str], below_new: bool) -> Iterator[DiffEntry]:
        below = {} if below_new else merged_entries(lowers, parts, opaque_xattr)
        for name, entry in sorted(_scandir(os.path.join(root, rel)).items()):
            if not rel and name in SKIP_TOP_LEVEL:
                continue
            sub = f"{rel}/{name}" if rel else name
            st = entry.stat(follow_symlinks=False)
            if is_whiteout(st):
                yield DiffEntry(ChangeKind.DELETE, sub, None)
                continue
            lower_path = below.get(name)
            is_dir = stat.S_ISDIR(st.st_mode)
            opaque = is_dir and lower_path is not None and is_opaque(entry.path, opaque_xattr)
            if lower_path is None:
                yield DiffEntry(ChangeKind.ADD, sub, entry.path)
            elif not (
                is_dir
                and not opaque
                and same_entry(lower_path, os.lstat(lower_path), entry.path, st)
            ):
                yield DiffEntry(ChangeKind.MODIFY, sub, entry.path, opaque=opaque)
            if is_dir:
                lower_is_dir = lower_path is not None and stat.S_ISDIR(os.lstat(lower_path).st_mode)
                yield from walk(sub, [*parts, name], below_new or not lower_is_dir or opaque)

    yield from walk("", [], not lowers)
