"""Resolving a path inside an image root, following symlinks without leaving it.

A layer may write ``lib/x.so`` where a lower layer made ``lib -> /usr/lib``
(or ``lib -> ../usr/lib``). Container runtimes resolve such paths as if
the image root were ``/``: an absolute link restarts at the root, and
``..`` never climbs above it. containerd does this with its scoped
``RootPath``, the kernel with ``openat2(RESOLVE_IN_ROOT)``. The result is
always a path of real directories inside the root, so nothing written
through it can land outside.

``walk`` is the portable version: it needs only ``lstat`` and
``readlink`` of the view being resolved, so it also works on views that
no single directory holds (an overlay upper dir over its lower layers).
"""

from __future__ import annotations

import stat
from collections.abc import Callable, Sequence

from . import errors

#: The kernel's limit on symlinks followed in one lookup (MAXSYMLINKS).
MAX_SYMLINKS = 40

Parts = tuple[str, ...]


def split_link(target: str) -> list[str]:
    """The components of a symlink target ('' and '.' dropped, '..' kept)."""
    return [p for p in target.split("/") if p not in ("", ".")]


def walk(
    parts: Sequence[str],
    lstat: Callable[[Parts], object | None],
    readlink: Callable[[Parts], str],
    *,
    entry: str,
    create: Callable[[Parts], None] | None = None,
) -> Parts | None:
    """Resolve the directory ``parts`` in the root, following symlinks inside it.

    Args:
        parts: the path's components, relative to the root.
        lstat: returns an ``os.stat_result`` for a resolved path, or None.
        readlink: the target of the symlink at a resolved path.
        entry: the tar entry being applied, for messages.
        create: called to make a missing directory; without it a missing
            directory makes the result None.

    Returns:
        The resolved components (real directories only), or None when a
        directory is missing and ``create`` is not given.

    Raises:
        errors.InvalidArgument: a component is not a directory, or the
            path has more than ``MAX_SYMLINKS`` links.
    """
    todo = list(parts)
    done: list[str] = []
    links = 0
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        cur = (*done, part)
        st = lstat(cur)
        if st is None:
            if create is None:
                return None
            create(cur)
            done.append(part)
            continue
        mode = st.st_mode  # type: ignore[attr-defined]
        if stat.S_ISLNK(mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise errors.InvalidArgument(
                    f"layer tar entry {entry!r}: too many levels of symbolic links"
                )
            target = readlink(cur)
            if target.startswith("/"):
                done = []
            todo[:0] = split_link(target)
            continue
        if not stat.S_ISDIR(mode):
            raise errors.InvalidArgument(
                f"layer tar entry {entry!r}: {'/'.join(cur)!r} is not a directory"
            )
        done.append(part)
    return tuple(done)
