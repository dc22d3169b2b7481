"""The one data copy, xattr copy and tree remover (``_sys.clone``, ``_sys.xattrs``, ``_sys.tree``)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from layerfs._sys import clone, tree, xattrs


def _files_with_xattrs(tmp_path: Path) -> tuple[Path, Path]:
    """Two files, ``src`` and ``dst``; skips the test without user xattrs."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.write_text("x")
    dst.write_text("y")
    try:
        os.setxattr(src, "user.probe", b"1")
        os.removexattr(src, "user.probe")
    except OSError:
        pytest.skip("no user xattrs on the test filesystem")
    return src, dst


def _copy(tmp_path: Path, data: bytes, size: int) -> bool:
    """Write ``data`` to ``src`` and ``copy_data`` ``size`` bytes of it to ``dst``."""
    (tmp_path / "src").write_bytes(data)
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "dst", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        return clone.copy_data(src, dst, size)
    finally:
        os.close(src)
        os.close(dst)


def _reflinks(where: Path) -> bool:
    """Whether FICLONE works in ``where`` (ext4: no; XFS, btrfs: yes)."""
    (where / "probe-src").write_bytes(b"p" * 4096)
    src = os.open(where / "probe-src", os.O_RDONLY)
    dst = os.open(where / "probe-dst", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        return clone.reflink(src, dst)
    finally:
        os.close(src)
        os.close(dst)


# -- clone.copy_data ------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, (3 << 20) + 1])
def test_copy_data_copies_every_byte(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    cloned = _copy(tmp_path, data, size)
    assert (tmp_path / "dst").read_bytes() == data
    assert cloned is (size > 0 and _reflinks(tmp_path))


def test_copy_data_falls_back_to_read_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(clone, "reflink", lambda src, dst: False)
    monkeypatch.setattr(os, "copy_file_range", refuse)
    data = os.urandom((2 << 20) + 7)
    assert _copy(tmp_path, data, len(data)) is False
    assert (tmp_path / "dst").read_bytes() == data


def test_copy_data_stops_at_a_shrunk_source(tmp_path: Path) -> None:
    _copy(tmp_path, b"short", 1 << 20)
    assert (tmp_path / "dst").read_bytes() == b"short"


def test_copy_data_raises_real_errors(tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"data")
    src = os.open(tmp_path / "src", os.O_RDONLY)
    dst = os.open(tmp_path / "src", os.O_RDONLY)  # not writable: EBADF from every path
    try:
        with pytest.raises(OSError):
            clone.copy_data(src, dst, 4)
    finally:
        os.close(src)
        os.close(dst)


# -- xattrs ---------------------------------------------------------------------------


def test_copy_xattrs_keeps_what_the_filter_accepts(tmp_path: Path) -> None:
    src, dst = _files_with_xattrs(tmp_path)
    os.setxattr(src, "user.keep", b"1")
    os.setxattr(src, "user.drop", b"2")
    xattrs.copy_xattrs(str(src), str(dst), keep=lambda name: name != "user.drop")
    assert xattrs.read_xattrs(str(dst)) == {"user.keep": b"1"}


def test_copy_xattrs_skips_only_tolerated_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = _files_with_xattrs(tmp_path)
    os.setxattr(src, "user.a", b"1")
    real = os.setxattr

    def refuse(path: object, name: str, *args: object, **kw: object) -> None:
        raise OSError(errno.EPERM, "not permitted")

    monkeypatch.setattr(os, "setxattr", refuse)
    xattrs.copy_xattrs(str(src), str(dst), tolerate=xattrs.UNSUPPORTED)  # skipped
    with pytest.raises(PermissionError):
        xattrs.copy_xattrs(str(src), str(dst))  # the default tolerates absence only
    monkeypatch.setattr(os, "setxattr", real)
    assert xattrs.read_xattrs(str(dst)) == {}


def test_read_xattrs_takes_bytes_paths(tmp_path: Path) -> None:
    src, _ = _files_with_xattrs(tmp_path)
    os.setxattr(src, "user.k", b"v")
    assert xattrs.read_xattrs(os.fsencode(src)) == {"user.k": b"v"}


# -- tree.remove_tree -----------------------------------------------------------------


def _tree(root: Path) -> None:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_text("x")
    (root / "a" / "ln").symlink_to("/etc")  # a link to a directory is unlinked, not followed
    (root / "z").mkdir()
    (root / "z" / "g").write_text("y")
    os.chmod(root / "a" / "b", 0o000)  # overlay's work/work; images' 0500 dirs
    os.chmod(root / "a", 0o500)


@pytest.mark.parametrize("as_bytes", [False, True])
def test_remove_tree_removes_unwritable_trees(tmp_path: Path, as_bytes: bool) -> None:
    root = tmp_path / "t"
    _tree(root)
    tree.remove_tree(os.fsencode(root) if as_bytes else root)
    assert not root.exists()
    assert os.path.isdir("/etc")


def test_remove_tree_accepts_missing_and_plain_files(tmp_path: Path) -> None:
    tree.remove_tree(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    tree.remove_tree(str(tmp_path / "f"))
    assert not (tmp_path / "f").exists()


def test_remove_tree_goes_on_past_a_failure_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "t"
    _tree(root)
    pinned = str(root / "a" / "b" / "f")
    real = os.unlink

    def unlink(path: str | bytes, *args: object, **kw: object) -> None:
        if os.fsdecode(path) == pinned:
            raise OSError(errno.EBUSY, "busy")
        real(path)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(OSError):
        tree.remove_tree(root)  # no on_error: the first failure raises

    failed: list[tuple[str, int | None]] = []
    tree.remove_tree(root, on_error=lambda p, exc: failed.append((os.fsdecode(p), exc.errno)))
    assert failed == [(pinned, errno.EBUSY)]  # its parents' ENOTEMPTY is not reported again
    assert not (root / "z").exists()
    assert sorted(p.name for p in root.rglob("*")) == ["a", "b", "f"]
