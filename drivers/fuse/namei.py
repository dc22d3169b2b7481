"""Lookup through the layer stack, the way overlayfs's namei does it.

A name is looked up in the parent's merged directories, topmost first. The
first hit decides: a character device 0/0 is a whiteout (the name is
deleted, nothing below shows), a non-directory hides everything below, a
directory merges with same-named directories further down until one of
them is opaque (``<prefix>overlay.opaque`` = ``y``) or a non-directory or
whiteout stops the descent. What a whiteout and an opaque mark are is
``layerfs._overlayfmt``'s business; this module walks the node layers.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import stat
import threading
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from layerfs._overlayfmt import lower
from layerfs._overlayfmt.marks import is_opaque, is_whiteout

if TYPE_CHECKING:
    from .fs import UnionFS

__all__ = ["is_whiteout", "resolve", "dir_layers", "lower_positive"]

_S_IFMT = 0o170000
_S_IFDIR = stat.S_IFDIR


def dir_layers(fs: UnionFS, path: bytes, candidates: Iterable[int]) -> tuple[int, ...]:
    """Layers among ``candidates`` whose ``path`` is a directory merged into the union one.

    The first candidate where ``path`` exists must hold a directory.
    """
    return lower.dir_layers(fs.roots, path, candidates, fs.opaque_xattr, fs.root_fds)


def resolve(
    fs: UnionFS, parent_layers: tuple[int, ...], path: bytes
) -> tuple[int, tuple[int, ...], os.stat_result] | None:
    """Find union ``path`` below a parent merged from ``parent_layers``.

    Returns:
        ``(layer, dir_layers, stat)`` of the topmost real object (``dir_layers``
        empty for a non-directory), or None when the name does not exist or is
        whited out.

    Raises:
        OSError: a real lookup failed for another reason than absence (EACCES, EIO).
    """
    roots = fs.roots
    fds = fs.root_fds
    rel = b"." + path
    n = len(parent_layers)
    found = (
        _first_deep(fds, parent_layers, rel)
        if n > PARALLEL_MIN_LAYERS
        else _first(fds, parent_layers, rel)
    )
    if found is None:
        return None
    i, st = found
    li = parent_layers[i]
    if is_whiteout(st):
        return None
    if (st.st_mode & _S_IFMT) != _S_IFDIR:
        return li, (), st
    if is_opaque(roots[li] + path, fs.opaque_xattr) or i + 1 == n:
        return li, (li,), st
    return li, (li, *dir_layers(fs, path, parent_layers[i + 1 :])), st


def _first(
    fds: list[int], layers: Sequence[int], rel: bytes, start: int = 0, stop: int | None = None
) -> tuple[int, os.stat_result] | None:
    """The first index in ``layers[start:stop]`` whose root has ``rel``, with its stat."""
    for i in range(start, len(layers) if stop is None else stop):
        try:
            return i, os.lstat(rel, dir_fd=fds[layers[i]])
        except (FileNotFoundError, NotADirectoryError):
            continue
    return None


#: Searching more layers than this, a real lookup that went to disk (slower
#: than ``COLD_NS``) makes the rest of the search run on ``PROBE_THREADS``
#: threads at once: a cold lookup through a deep chain then waits for about
#: one disk read per thread's share instead of one per layer. Warm lookups
#: never pay for it.
PARALLEL_MIN_LAYERS = 8
COLD_NS = 50_000
PROBE_THREADS = 16

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pools() -> None:
    # A forked child (a test's server, a fork server's child) has none of
    # the parent's pool threads: it must make its own pool.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


def _probe_pool() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(PROBE_THREADS, "fuse-probe")
        return _pool


def _first_deep(
    fds: list[int], layers: Sequence[int], rel: bytes
) -> tuple[int, os.stat_result] | None:
    """``_first`` over many layers, in parallel once a lookup shows the cache is cold."""
    n = len(layers)
    now = time.perf_counter_ns
    for i in range(n):
        t = now()
        try:
            return i, os.lstat(rel, dir_fd=fds[layers[i]])
        except (FileNotFoundError, NotADirectoryError):
            pass
        rest = n - i - 1
        if rest > PARALLEL_MIN_LAYERS and now() - t > COLD_NS:
            # Chunks in layer order; the first chunk with a hit holds the
            # topmost one (a chunk stops at its first hit, as the loop would).
            step = -(-rest // PROBE_THREADS)
            try:
                pool = _probe_pool()
                futures = [
                    pool.submit(_first, fds, layers, rel, j, min(j + step, n))
                    for j in range(i + 1, n, step)
                ]
            except RuntimeError:  # no thread to be had (RLIMIT_NPROC): search on here
                return _first(fds, layers, rel, i + 1)
            for fut in futures:
                hit = fut.result()
                if hit is not None:
                    return hit
            return None
    return None


def lower_positive(fs: UnionFS, parent_layers: tuple[int, ...], path: bytes) -> bool:
    """True when a lower layer (below the upper) shows something at ``path``.

    Decides whether removing or renaming away the upper object must leave a
    whiteout so the lower one stays hidden.
    """
    for li in parent_layers:
        if li < fs.first_lower:
            continue
        st = lower.lstat_or_none(b"." + path, fs.root_fds[li])
        if st is None:
            continue
        return not is_whiteout(st)
    return False


def check_name(name: bytes) -> None:
    """Refuse names the kernel would never send (defence in depth).

    Raises:
        OSError: EINVAL for empty, ``.``, ``..`` or names with a slash.
    """
    if not name or name in (b".", b"..") or b"/" in name:
        raise OSError(errno.EINVAL, "bad name")


os.register_at_fork(after_in_child=_forget_pools)
