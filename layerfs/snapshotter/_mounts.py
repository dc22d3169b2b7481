"""Mounts that containerd can mount itself.

containerd (the daemon while unpacking, the runc shim when starting a
container) mounts what the snapshotter returns with its own mount code,
not ours. Facts about that code in containerd 1.6 (``mount/mount_linux.go``):

- Options are split into flags (``ro``, ``rbind``, ``nosuid``...) and a
  data string that goes to ``mount(2)``; the kernel copies at most one
  page of it, so a longer string is cut and the mount fails.
- For ``overlay``, when the options reach a page less 512 bytes, it
  shortens ``lowerdir=`` itself: it takes the longest common prefix of the
  lower dirs, cuts it back to a directory, makes every lower dir relative
  to it and mounts from a child process that ``chdir``s there. With
  layerfs's short links (``<home>/l/ABCDEFGH``) each layer then costs 9
  bytes, so about 430 layers fit in a 4 KiB page (less the absolute
  ``upperdir=`` and ``workdir=``, so a little less under a long store path).
- Past that, it cannot mount the stack at all. For those snapshots the
  server mounts the overlay itself (with the new mount API, which takes
  one ``lowerdir+`` per layer and has no page limit) and hands containerd
  a bind mount of the result; the mount is taken down before the
  snapshot is committed or removed.
- Types ``fuse.<name>`` go to the ``mount.fuse`` helper, which runs
  ``<name> SOURCE TARGET -o OPTIONS`` through the shell; the ``layerfs``
  command answers that call (see ``layerfs.cli``).
- ``bind`` with ``ro`` is bound, then remounted read-only.
"""

from __future__ import annotations

import os
import posixpath

from layerfs import errors
from layerfs._store import Store
from layerfs._types import Kind, Mount

__all__ = ["kernel_data_bytes", "fits_containerd", "Premounts"]

# The options containerd 1.6 turns into mount flags (never in the data string).
_FLAGS = {
    "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "mand",
    "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime",
    "nosuid", "rbind", "relatime", "remount", "ro", "rw", "strictatime", "suid", "sync",
}  # fmt: skip
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _options_size(options: tuple[str, ...]) -> int:
    return sum(len(o) + 1 for o in options)


def _compact_lowerdir(options: tuple[str, ...]) -> tuple[str, ...]:
    """containerd's own shortening of ``lowerdir=`` (see the module docstring)."""
    at = next((i for i, o in enumerate(options) if o.startswith("lowerdir=")), None)
    if at is None:
        return options
    dirs = options[at][len("lowerdir=") :].split(":")
    if len(dirs) == 1:
        return options
    common = os.path.commonprefix(dirs)
    if not common:
        return options
    # Go's path.Dir: drop the last element, clean the rest.
    common = posixpath.normpath(posixpath.dirname(common))
    if common == "/":
        return options
    cut = len(common) + 1
    rest = options[:at] + options[at + 1 :]
    return rest + ("lowerdir=" + ":".join(d[cut:] for d in dirs),)


def kernel_data_bytes(m: Mount) -> int:
    """Bytes of the data string containerd 1.6 would pass to ``mount(2)`` for ``m``, with NUL."""
    options = m.options
    if m.type == "overlay" and _options_size(options) >= _PAGE - 512:
        options = _compact_lowerdir(options)
    return len(",".join(o for o in options if o not in _FLAGS)) + 1


def fits_containerd(mounts: list[Mount]) -> bool:
    """True when containerd can mount every one of ``mounts`` by itself."""
    return all(m.type.startswith("fuse.") or kernel_data_bytes(m) <= _PAGE for m in mounts)


class Premounts:
    """The trees this server mounted because containerd could not mount them.

    Args:
        store: the store the mounts belong to.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._paths: dict[str, str] = {}

    def for_containerd(self, key: str, mounts: list[Mount]) -> list[Mount]:
        """``mounts``, or a bind mount of the tree mounted here when containerd cannot mount them.

        Raises:
            errors.LayerfsError: from mounting (as ``Store.mount``).
        """
        if fits_containerd(mounts):
            return mounts
        kind = self._store.stat(key).kind
        path = self._paths.get(key)
        if path is None:
            path = self._paths[key] = self._store.mount(key, persistent=True)
        return [Mount("bind", path, ("rbind", "rw" if kind is Kind.ACTIVE else "ro"))]

    def release(self, key: str) -> None:
        """Take down what ``for_containerd`` mounted for ``key`` (before commit or remove).

        A snapshot that containerd can mount itself is left alone, so a mount
        made by someone else still makes commit and remove fail with Busy.
        Deep snapshots lose every mount reference: after a restart of the
        server the one it made earlier is not told apart from others.
        """
        self._paths.pop(key, None)
        try:
            mounts = self._store.mounts(key)
        except errors.NotFound:
            return
        if fits_containerd(mounts):
            return
        while True:
            try:
                self._store.unmount(key)
            except errors.NotFound:
                return
