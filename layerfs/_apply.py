"""Unpack an OCI layer tar into a snapshot, safely.

Two targets, chosen by the driver:

- ``TreeTarget``: the snapshot's whole tree (``copy``, or a mounted
  ``devmapper`` device). A whiteout ``.wh.name`` deletes ``name``; an
  opaque marker ``.wh..wh..opq`` deletes the directory's existing entries
  except those this same tar wrote.
- ``DiffTarget``: the snapshot's upper directory in overlay format, with
  the parents' upper directories underneath (``overlay``, ``fuse``). A
  whiteout becomes a 0/0 character device, an opaque marker becomes the
  ``overlay.opaque`` xattr. Nothing needs to be mounted.

Safety rules, for every entry: the path is relative, has no ``..``, and
never goes through a symlink (in the target or in a lower layer); hard
link targets obey the same rules; xattrs in the overlay namespace are
dropped (a tar must not forge whiteouts or redirects). A violation raises
``InvalidArgument``; the caller throws the half-written snapshot away.
"""

from __future__ import annotations

import errno
import os
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

from . import errors
from ._fstree import copy_node, remove_tree
from ._lower import is_opaque, lookup

WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
_PRIVILEGED = os.geteuid() == 0
_FORBIDDEN_XATTRS = ("trusted.overlay.", "user.overlay.")


def split_name(name: str) -> list[str]:
    """Split a tar member name into safe path components.

    Raises:
        errors.InvalidArgument: absolute path or a ``..`` component.
    """
    if name.startswith("/"):
        raise errors.InvalidArgument(f"layer tar entry {name!r} is an absolute path; refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise errors.InvalidArgument(
            f"layer tar entry {name!r} escapes the root with '..'; refused"
        )
    return parts


class _Target:
    """What both targets share: the root and the entries written so far."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.written: set[tuple[str, ...]] = set()
        self.dir_times: dict[str, tuple[int, int]] = {}

    def path(self, parts: Sequence[str]) -> str:
        return os.path.join(self.root, *parts)

    def prepare_parent(self, parts: Sequence[str], name: str) -> None:
        raise NotImplementedError

    def whiteout(self, parts: Sequence[str], name: str) -> None:
        raise NotImplementedError

    def opaque(self, parts: Sequence[str], name: str) -> None:
        raise NotImplementedError

    def link_source(self, parts: Sequence[str], name: str) -> str:
        raise NotImplementedError

    def clear(self, path: str, new_is_dir: bool) -> bool:
        """Make room at ``path``; True when an existing directory is kept."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if new_is_dir:
                return True
            remove_tree(Path(path))
        else:
            os.unlink(path)
        return False


class TreeTarget(_Target):
    """Apply into a snapshot's full tree."""

    def _check_dirs(
        self, parts: Sequence[str], name: str, create: bool, missing_ok: bool = False
    ) -> bool:
        """Check (and maybe create) the directories ``parts``; False when one is missing."""
        cur = self.root
        for part in parts:
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                if missing_ok:
                    return False
                if not create:
                    raise errors.InvalidArgument(
                        f"layer tar entry {name!r}: {cur[len(self.root) :]!r} does not exist"
                    ) from None
                os.mkdir(cur, 0o755)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise errors.InvalidArgument(
                    f"layer tar entry {name!r} goes through the symlink "
                    f"{cur[len(self.root) :]!r}; refused"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise errors.InvalidArgument(
                    f"layer tar entry {name!r}: {cur[len(self.root) :]!r} is not a directory"
                )
        return True

    def prepare_parent(self, parts: Sequence[str], name: str) -> None:
        self._check_dirs(parts[:-1], name, create=True)

    def whiteout(self, parts: Sequence[str], name: str) -> None:
        if not self._check_dirs(parts[:-1], name, create=False, missing_ok=True):
            return
        path = self.path(parts)
        if os.path.lexists(path):
            if os.path.isdir(path) and not os.path.islink(path):
                remove_tree(Path(path))
            else:
                os.unlink(path)

    def opaque(self, parts: Sequence[str], name: str) -> None:
        self._check_dirs(parts, name, create=True)
        base = tuple(parts)
        for entry in os.listdir(self.path(parts)):
            if base + (entry,) in self.written:
                continue
            path = self.path([*parts, entry])
            if os.path.isdir(path) and not os.path.islink(path):
                remove_tree(Path(path))
            else:
                os.unlink(path)

    def link_source(self, parts: Sequence[str], name: str) -> str:
        self._check_dirs(parts[:-1], name, create=False)
        return self.path(parts)


class DiffTarget(_Target):
    """Apply into an overlay upper directory, with the parents' upper dirs as lowers."""

    def __init__(self, root: Path, lowers: Sequence[Path], opaque_xattr: str) -> None:
        super().__init__(root)
        self.lowers = list(lowers)
        self.opaque_xattr = opaque_xattr

    def _ensure_dirs(self, parts: Sequence[str], name: str) -> None:
        """Make every directory in ``parts`` exist in the upper, copied up from below."""
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            upper = self.path(prefix)
            try:
                st = os.lstat(upper)
            except FileNotFoundError:
                lower = lookup(self.lowers, prefix, self.opaque_xattr)
                if lower is None:
                    os.mkdir(upper, 0o755)
                    continue
                lst = os.lstat(lower)
                if stat.S_ISLNK(lst.st_mode):
                    raise errors.InvalidArgument(
                        f"layer tar entry {name!r} goes through the symlink "
                        f"{'/'.join(prefix)!r} of a lower layer; refused"
                    ) from None
                if not stat.S_ISDIR(lst.st_mode):
                    raise errors.InvalidArgument(
                        f"layer tar entry {name!r}: {'/'.join(prefix)!r} is not a directory"
                    ) from None
                os.mkdir(upper, 0o700)
                _copy_dir_metadata(lower, upper, lst)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise errors.InvalidArgument(
                    f"layer tar entry {name!r} goes through the symlink {'/'.join(prefix)!r}; refused"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise errors.InvalidArgument(
                    f"layer tar entry {name!r}: {'/'.join(prefix)!r} is not a directory"
                )

    def prepare_parent(self, parts: Sequence[str], name: str) -> None:
        self._ensure_dirs(parts[:-1], name)

    def whiteout(self, parts: Sequence[str], name: str) -> None:
        self._ensure_dirs(parts[:-1], name)
        path = self.path(parts)
        self.clear(path, new_is_dir=False)
        if lookup(self.lowers, parts, self.opaque_xattr) is not None:
            os.mknod(path, stat.S_IFCHR | 0o600, 0)

    def opaque(self, parts: Sequence[str], name: str) -> None:
        self._ensure_dirs(parts, name)
        os.setxattr(self.path(parts), self.opaque_xattr, b"y", follow_symlinks=False)

    def link_source(self, parts: Sequence[str], name: str) -> str:
        upper = self.path(parts)
        if os.path.lexists(upper):
            self._ensure_dirs(parts[:-1], name)
            return upper
        lower = lookup(self.lowers, parts, self.opaque_xattr)
        if lower is None:
            raise errors.InvalidArgument(f"layer tar hard link {name!r}: target does not exist")
        # The link target lives in a lower layer: copy it up first, as overlay would.
        self._ensure_dirs(parts[:-1], name)
        copy_node(lower, upper, os.lstat(lower))
        return upper


def _copy_dir_metadata(src: str, dst: str, st: os.stat_result) -> None:
    if _PRIVILEGED:
        os.lchown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))


def _set_xattrs(path: str, member: tarfile.TarInfo) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        xname = key[len("SCHILY.xattr.") :]
        if xname.startswith(_FORBIDDEN_XATTRS):
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
            os.write(fd, chunk)
            remaining -= len(chunk)
    finally:
        os.close(fd)


class _EndRecording(tarfile.TarInfo):
    saw_end: bool = False


def _end_recording_tarinfo() -> type[_EndRecording]:
    """A TarInfo class that notes when it sees the zero block ending an archive."""

    class EndRecordingTarInfo(_EndRecording):
        @classmethod
        def note(cls, buf: bytes) -> None:
            if len(buf) == tarfile.BLOCKSIZE and buf.count(0) == tarfile.BLOCKSIZE:
                EndRecordingTarInfo.saw_end = True

        @classmethod
        def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:  # type: ignore[override]
            cls.note(buf)
            return super().frombuf(buf, encoding, errors)

        # CPython's tarfile security release of June 2025 (3.13.4, 3.12.11,
        # 3.11.13, and Debian's backports) reads headers through _frombuf,
        # no longer through frombuf.
        @classmethod
        def _frombuf(cls, buf: bytes, encoding: str, errors: str, **kw: Any) -> tarfile.TarInfo:
            cls.note(buf)
            return super()._frombuf(buf, encoding, errors, **kw)  # type: ignore[misc]

    return EndRecordingTarInfo


def apply_tar(stream: BinaryIO, target: _Target) -> int:
    """Unpack the uncompressed tar ``stream`` into ``target``.

    Returns:
        The number of entries applied.

    Raises:
        errors.InvalidArgument: not a tar, truncated, or an unsafe entry.
        errors.Unsupported: a device node when not privileged.
    """
    count = 0
    dirs: list[tuple[str, tarfile.TarInfo]] = []
    info_class = _end_recording_tarinfo()
    try:
        with tarfile.open(fileobj=stream, mode="r|", errorlevel=2, tarinfo=info_class) as tar:
            for member in tar:
                count += 1
                _apply_member(member, tar, target, dirs)
    except (tarfile.TarError, EOFError) as exc:
        raise errors.InvalidArgument(f"layer is not a valid tar or is truncated: {exc}") from exc
    if not info_class.saw_end:
        # tarfile treats a stream that stops at a header boundary as a
        # normal end; a real archive ends with a zero block.
        raise errors.InvalidArgument("layer tar is truncated: no end-of-archive marker")
    # Directory times last: writing children changed them.
    for path, member in reversed(dirs):
        mtime = int(member.mtime * 1_000_000_000)
        os.utime(path, ns=(mtime, mtime), follow_symlinks=False)
    return count


def _apply_member(
    member: tarfile.TarInfo,
    tar: tarfile.TarFile,
    target: _Target,
    dirs: list[tuple[str, tarfile.TarInfo]],
) -> None:
    parts = split_name(member.name)
    if not parts:
        return  # the root itself: its metadata belongs to the parent layer
    base = parts[-1]
    if base.startswith(WHITEOUT_PREFIX):
        if base == OPAQUE_MARKER:
            target.opaque(parts[:-1], member.name)
        elif base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            pass  # other aufs metadata (.wh..wh.plnk and the like): nothing to apply
        else:
            real = base[len(WHITEOUT_PREFIX) :]
            if real in ("", ".", ".."):
                raise errors.InvalidArgument(f"layer tar whiteout {member.name!r} is malformed")
            target.whiteout([*parts[:-1], real], member.name)
        return
    target.prepare_parent(parts, member.name)
    path = target.path(parts)
    kept_dir = target.clear(path, new_is_dir=member.isdir())
    target.written.add(tuple(parts))
    if member.isdir():
        if not kept_dir:
            os.mkdir(path, 0o700)
        _set_metadata(path, member)
        dirs.append((path, member))
    elif member.isreg():
        _write_file(path, member, tar)
        _set_metadata(path, member)
    elif member.issym():
        os.symlink(member.linkname, path)
        _set_metadata(path, member)
    elif member.islnk():
        source = target.link_source(split_name(member.linkname), member.name)
        if not os.path.lexists(source) or os.path.isdir(source) and not os.path.islink(source):
            raise errors.InvalidArgument(
                f"layer tar hard link {member.name!r} -> {member.linkname!r}: no such file"
            )
        os.link(source, path, follow_symlinks=False)
    elif member.ischr() or member.isblk() or member.isfifo():
        if not member.isfifo() and not _PRIVILEGED:
            raise errors.Unsupported(
                f"layer tar entry {member.name!r} is a device node; creating it needs root"
            )
        kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK if member.isblk() else stat.S_IFIFO
        os.mknod(path, kind | 0o600, os.makedev(member.devmajor, member.devminor))
        _set_metadata(path, member)
    else:
        raise errors.InvalidArgument(f"layer tar entry {member.name!r} has an unknown type")


__all__ = ["TreeTarget", "DiffTarget", "apply_tar", "split_name", "is_opaque"]
