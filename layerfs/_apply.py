"""Unpack an OCI layer tar into a snapshot: the one implementation of layer semantics.

The rules (OCI image-spec, "Applying changesets"; containerd and Docker
agree), for a layer applied on the tree of its parent:

- A whiteout ``.wh.<name>`` deletes ``<name>`` *from the lower layers*;
  an opaque marker ``<dir>/.wh..wh..opq`` deletes everything the lower
  layers hold below ``<dir>``. Neither touches what this same layer
  writes, so their place in the tar does not matter.
- Any other entry replaces what is at its path, except that a directory
  over a directory keeps its contents and takes the entry's metadata
  (xattrs the entry lacks are removed). A directory
  the layer implies (``a/b/f`` without an ``a/b`` entry) is made with
  mode 0755 and the applying user as owner.
- Paths resolve inside the root: a symlink in a directory part is
  followed, an absolute target starts at the root, and ``..`` stops
  there (``_scoped``). The last component is never followed.
- A hard link names an entry of this layer or of the lower layers, as
  the tree stands when the link is read.

Safety, for every entry: the name is relative and has no ``..``; names
and paths fit NAME_MAX and PATH_MAX; xattrs in the overlay namespace are
dropped (a tar must not forge whiteouts or redirects). A violation raises
``InvalidArgument`` naming the entry; a full filesystem raises
``NoSpace``; the caller throws the half-written snapshot away.

Where the entries land is the target's business (``_targets``): the full
tree, or an overlay-format diff directory.
"""

from __future__ import annotations

import errno
import lzma
import os
import stat
import tarfile
import zlib
from typing import BinaryIO

from . import errors
from ._overlayfmt.marks import OVERLAY_XATTRS
from ._scoped import Parts, walk
from ._sys.xattrs import list_xattrs
from ._targets import DiffTarget, Target, TreeTarget
from ._tarread import iter_members

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
NAME_MAX = 255
PATH_MAX = 4096
_PRIVILEGED = os.geteuid() == 0


def split_name(name: str) -> list[str]:
    """Split a tar member name into safe path components.

    Raises:
        errors.InvalidArgument: absolute path, a ``..`` component, or a
            name or path too long for Linux.
    """
    if name.startswith("/"):
        raise errors.InvalidArgument(f"layer tar entry {name!r} is an absolute path; refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise errors.InvalidArgument(
            f"layer tar entry {name!r} escapes the root with '..'; refused"
        )
    raw = os.fsencode(name)
    if len(raw) >= PATH_MAX or any(len(os.fsencode(p)) > NAME_MAX for p in parts):
        raise errors.InvalidArgument(_too_long(name))
    return parts


def _too_long(name: str) -> str:
    short = name if len(name) <= 80 else name[:60] + "..." + name[-16:]
    return (
        f"layer tar entry {short!r}: name or path too long (at most {NAME_MAX} bytes "
        f"per name and {PATH_MAX - 1} per path); shorten it in the image"
    )


class _Applier:
    """One layer's application: the entries written so far and the rules above."""

    def __init__(self, target: Target) -> None:
        self.target = target
        #: Paths this layer wrote (entries and the directories they imply).
        self.written: set[Parts] = set()
        #: Every directory above a written path.
        self.above_written: set[Parts] = set()
        #: Directory entries, whose times are set last.
        self.dirs: dict[Parts, tarfile.TarInfo] = {}

    def _mark(self, parts: Parts) -> None:
        self.written.add(parts)
        for depth in range(len(parts)):
            self.above_written.add(parts[:depth])

    def _remove(self, parts: Parts, st: os.stat_result) -> None:
        self.target.remove(parts)
        if stat.S_ISDIR(st.st_mode):
            n = len(parts)
            for gone in [d for d in self.dirs if d[:n] == parts]:
                del self.dirs[gone]

    def _ours(self, parts: Parts) -> bool:
        return parts in self.written or parts in self.above_written

    def resolve(self, parts: list[str], entry: str, create: bool) -> Parts | None:
        """Resolve the directory ``parts`` inside the root (making it if ``create``)."""
        fast = self.target.resolve_dir(parts)
        if fast is not None:
            return fast

        def make(cur: Parts) -> None:
            self.target.make_dir(cur)
            self._mark(cur)

        return walk(
            parts,
            self.target.lstat,
            self.target.readlink,
            entry=entry,
            create=make if create else None,
        )

    # -- deletions ---------------------------------------------------------

    def whiteout(self, parts: list[str], entry: str) -> None:
        real = parts[-1][len(WHITEOUT_PREFIX) :]
        if real in ("", ".", ".."):
            raise errors.InvalidArgument(f"layer tar whiteout {entry!r} is malformed")
        parent = self.resolve(parts[:-1], entry, create=False)
        if parent is None:
            return
        path = (*parent, real)
        st = self.target.lstat(path)
        if st is None:
            return
        if not self._ours(path):
            self._remove(path, st)
        elif stat.S_ISDIR(st.st_mode):
            self.drop_lower(path)

    def opaque(self, parts: list[str], entry: str) -> None:
        where = self.resolve(parts[:-1], entry, create=True)
        assert where is not None
        self.drop_lower(where)

    def drop_lower(self, parts: Parts) -> None:
        """Delete what lower layers hold below the directory ``parts``; keep this layer's."""
        self.target.hide_lower(parts)
        for name in self.target.listdir(parts):
            child = (*parts, name)
            st = self.target.lstat(child)
            if st is None:
                continue
            if not self._ours(child):
                self._remove(child, st)
            elif stat.S_ISDIR(st.st_mode):
                self.drop_lower(child)

    # -- entries -----------------------------------------------------------

    def entry(self, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
        parts = split_name(member.name)
        if not parts:
            return  # the root itself: its metadata belongs to the parent layer
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            if base == OPAQUE_MARKER:
                self.opaque(parts, member.name)
            elif not base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
                self.whiteout(parts, member.name)
            # other aufs metadata (.wh..wh.plnk and the like): nothing to apply
            return
        source = self._link_source(member) if member.islnk() else None
        parent = self.resolve(parts[:-1], member.name, create=True)
        assert parent is not None
        path = (*parent, base)
        if source is not None and source[0] == path:
            # A hard link to itself keeps the entry as this layer's: an
            # overlay-format target must copy it up, or a later opaque
            # marker in this layer would hide it.
            self.target.link_source(path)
            self._mark(path)
            return
        if source is not None and source[0][: len(path)] == path:
            raise errors.InvalidArgument(
                f"layer tar hard link {member.name!r} -> {member.linkname!r}: the target "
                "is inside the directory the link would replace"
            )
        st = self.target.lstat(path)
        keep = st is not None and stat.S_ISDIR(st.st_mode) and member.isdir()
        if st is not None and not keep:
            self._remove(path, st)
        self._mark(path)
        if member.isdir():
            real = self.target.keep_dir(path) if keep else self.target.make_dir(path)
            if keep:
                _drop_other_xattrs(real, member)
            _set_metadata(real, member)
            self.dirs[path] = member
            return
        real = self.target.new_path(path)
        if member.isreg():
            _write_file(real, member, tar)
            _set_metadata(real, member)
        elif member.issym():
            os.symlink(member.linkname, real)
            _set_metadata(real, member)
        elif source is not None:
            linked = self.target.link_source(source[0])
            # Copying a lower link target up also copies up its other names,
            # and this very name may be one of them: clear it again.
            real = self.target.new_path(path)
            os.link(linked, real, follow_symlinks=False)
        elif member.ischr() or member.isblk() or member.isfifo():
            if not member.isfifo() and not _PRIVILEGED:
                raise errors.Unsupported(
                    f"layer tar entry {member.name!r} is a device node; creating it needs root"
                )
            kind = (
                stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
            )
            os.mknod(real, kind | 0o600, os.makedev(member.devmajor, member.devminor))
            _set_metadata(real, member)
        else:
            raise errors.InvalidArgument(f"layer tar entry {member.name!r} has an unknown type")

    def _link_source(self, member: tarfile.TarInfo) -> tuple[Parts]:
        where = split_name(member.linkname)
        if not where:
            raise errors.InvalidArgument(
                f"layer tar hard link {member.name!r} points at the root; refused"
            )
        parent = self.resolve(where[:-1], member.name, create=False)
        source = None if parent is None else (*parent, where[-1])
        st = None if source is None else self.target.lstat(source)
        if source is None or st is None or stat.S_ISDIR(st.st_mode):
            raise errors.InvalidArgument(
                f"layer tar hard link {member.name!r} -> {member.linkname!r}: no such file "
                "in this layer or below"
            )
        return (source,)

    def finish(self) -> None:
        """Set directory times last: writing their children changed them.

        Only directories still standing: a later entry may have replaced one.
        """
        for path in sorted(self.dirs, key=len, reverse=True):
            mtime = int(self.dirs[path].mtime * 1_000_000_000)
            os.utime(self.target.real(path), ns=(mtime, mtime), follow_symlinks=False)


#: Xattrs the system sets, not the image: never removed from a directory.
_SYSTEM_XATTRS = ("security.selinux",)


def _drop_other_xattrs(path: str, member: tarfile.TarInfo) -> None:
    """Remove a kept directory's xattrs that the new entry does not carry."""
    for name in list_xattrs(path):
        if name.startswith(OVERLAY_XATTRS) or name in _SYSTEM_XATTRS:
            continue
        if "SCHILY.xattr." + name not in member.pax_headers:
            try:
                os.removexattr(path, name, follow_symlinks=False)
            except OSError as exc:
                if exc.errno not in (errno.ENODATA, errno.EPERM):
                    raise


def _set_xattrs(path: str, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        xname = key[len("SCHILY.xattr.") :]
        if xname.startswith(OVERLAY_XATTRS):
            continue
        raw = value.encode("utf-8", "surrogateescape")
        try:
            os.setxattr(path, xname, raw, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP) or (
                exc.errno == errno.EPERM and not _PRIVILEGED
            ):
                continue
            raise


def _set_metadata(path: str, member: tarfile.TarInfo) -> None:
    # Owner first: chown clears setuid bits, so the mode comes after it.
    if _PRIVILEGED:
        os.lchown(path, member.uid, member.gid)
    _set_xattrs(path, member)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    mtime = int(member.mtime * 1_000_000_000)
    os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def _write_file(path: str, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
    src = tar.extractfile(member)
    assert src is not None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        remaining = member.size
        while remaining:
            chunk = src.read(min(remaining, 1 << 20))
            if not chunk:
                raise errors.InvalidArgument(f"layer tar is truncated inside {member.name!r}")
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            remaining -= len(chunk)
    finally:
        os.close(fd)


_STREAM_ERRORS = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError)


def apply_tar(stream: BinaryIO, target: Target) -> int:
    """Unpack the uncompressed tar ``stream`` into ``target``.

    Returns:
        The number of entries applied.

    Raises:
        errors.InvalidArgument: not a tar, truncated, an unsafe entry, or
            a name too long.
        errors.NoSpace: the filesystem is full.
        errors.Unsupported: a device node when not privileged.
        errors.LayerfsError: any other failure to write, naming the entry.
    """
    applier = _Applier(target)
    count = 0
    name = None
    try:
        for member, tar in iter_members(stream):
            name = member.name
            count += 1
            applier.entry(member, tar)
        name = None
        applier.finish()
    except _STREAM_ERRORS as exc:
        raise errors.InvalidArgument(f"layer is not a valid tar or is truncated: {exc}") from exc
    except OSError as exc:
        raise oserror_to_layerfs(exc, name) from exc
    except errors.LayerfsError:
        raise
    except Exception as exc:
        # The decompressor's own errors (zstandard.ZstdError) have no common base.
        if type(exc).__module__.startswith("zstandard"):
            raise errors.InvalidArgument(
                f"layer zstd stream is corrupt or truncated: {exc}"
            ) from exc
        raise
    finally:
        target.close()
    return count


def oserror_to_layerfs(exc: OSError, entry: str | None) -> errors.LayerfsError:
    """The layerfs error for an ``OSError`` raised while applying ``entry`` (None: no entry)."""
    where = f"layer tar entry {entry!r}" if entry is not None else "applying the layer"
    if exc.errno == errno.ENAMETOOLONG:
        return errors.InvalidArgument(_too_long(entry) if entry else f"{where}: {exc}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return errors.NoSpace(
            f"{where}: no space left on the store's filesystem; free space or apply "
            "the layer on a bigger one (nothing was kept)"
        )
    if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENOENT):
        return errors.InvalidArgument(f"{where}: {exc.strerror}; the layer tar is inconsistent")
    return errors.from_oserror(exc, where)


__all__ = [
    "DiffTarget",
    "TreeTarget",
    "apply_tar",
    "split_name",
    "oserror_to_layerfs",
    "OPAQUE_MARKER",
    "WHITEOUT_PREFIX",
]
