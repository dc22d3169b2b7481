"""The overlay on-disk format's marks and layer reading (``_overlayfmt.marks``, ``.lower``)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from layerfs._overlayfmt import lower, marks

OPAQUE = marks.opaque_xattr("user.")


def _whiteout(path: Path) -> None:
    try:
        marks.make_whiteout(path)
    except PermissionError:
        pytest.skip("mknod 0/0 needs CAP_MKNOD here")


def test_whiteout_is_a_mode_0_char_device_0_0(tmp_path: Path) -> None:
    _whiteout(tmp_path / "gone")
    st = os.lstat(tmp_path / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and stat.S_IMODE(st.st_mode) == 0
    assert marks.is_whiteout(st)
    (tmp_path / "f").write_text("x")
    assert not marks.is_whiteout(os.lstat(tmp_path / "f"))
    if os.geteuid() == 0:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        assert not marks.is_whiteout(os.lstat(tmp_path / "null"))


def test_opaque_mark_round_trip(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    try:
        assert not marks.is_opaque(d, OPAQUE)
        marks.set_opaque(os.fsencode(d), OPAQUE.encode())
    except OSError:
        pytest.skip("no user xattrs on the test filesystem")
    assert marks.is_opaque(d, OPAQUE)
    assert marks.is_opaque(os.fsencode(d), OPAQUE.encode())
    assert not marks.is_opaque(tmp_path / "missing", OPAQUE)


def test_private_and_image_xattrs() -> None:
    assert marks.is_private_xattr("trusted.overlay.opaque", "trusted.")
    assert not marks.is_private_xattr("trusted.overlay.overlay.opaque", "trusted.")  # escaped
    assert not marks.is_private_xattr("user.overlay.opaque", "trusted.")  # other namespace
    assert marks.is_private_xattr("user.overlay.redirect", "user.")
    assert marks.is_image_xattr("user.color") and marks.is_image_xattr("security.capability")
    assert not marks.is_image_xattr("user.overlay.opaque")
    assert not marks.is_image_xattr("trusted.overlay.origin")


def test_dir_layers_stop_at_opaque_and_non_directories(tmp_path: Path) -> None:
    roots = []
    for name in ("up", "l1", "l2", "l3"):
        (tmp_path / name).mkdir()
        roots.append(os.fsencode(tmp_path / name))
    for name in ("up", "l2", "l3"):
        (tmp_path / name / "d").mkdir()
    try:
        marks.set_opaque(tmp_path / "l2" / "d", OPAQUE)
    except OSError:
        pytest.skip("no user xattrs on the test filesystem")
    assert lower.dir_layers(roots, b"/d", range(4), OPAQUE.encode()) == (0, 2)
    (tmp_path / "l1" / "d").write_text("a file hides what is below")
    assert lower.dir_layers(roots, b"/d", range(4), OPAQUE.encode()) == (0,)
    assert lower.dir_layers(roots, b"/d", range(1, 4), OPAQUE.encode()) == ()


def test_lookup_and_listing_through_whiteouts(tmp_path: Path) -> None:
    top, below = tmp_path / "top", tmp_path / "below"
    for d in (top, below):
        (d / "dir").mkdir(parents=True)
    (below / "dir" / "kept").write_text("k")
    (below / "dir" / "deleted").write_text("d")
    _whiteout(top / "dir" / "deleted")
    (top / "dir" / "new").write_text("n")
    layers = [top, below]
    assert lower.lookup(layers, ("dir", "kept"), OPAQUE) == str(below / "dir" / "kept")
    assert lower.lookup(layers, ("dir", "deleted"), OPAQUE) is None
    assert lower.merged_names(layers, ("dir",), OPAQUE) == {"kept", "new"}
