"""Layer tars with what only root can create: owners, device nodes, trusted xattrs.

Also checks the overlay-format writer (``DiffTarget``) and reader
(``scan_diff_dir``) on plain directories, and that a tar cannot forge
overlay's own xattrs.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import layerfs
from layerfs import ChangeKind
from layerfs._apply import DiffTarget, apply_tar
from layerfs._diff import scan_diff_dir
from layerfs.testing.suite import build_tar
from layerfs.testing.trees import describe


def _special_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add(info: tarfile.TarInfo, data: bytes | None = None) -> None:
            info.mtime = 1_700_000_000
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        d = tarfile.TarInfo("dev")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        add(d)
        null = tarfile.TarInfo("dev/null")
        null.type, null.mode, null.devmajor, null.devminor = tarfile.CHRTYPE, 0o666, 1, 3
        add(null)
        fifo = tarfile.TarInfo("dev/fifo")
        fifo.type, fifo.mode = tarfile.FIFOTYPE, 0o600
        add(fifo)
        owned = tarfile.TarInfo("owned")
        owned.size, owned.mode, owned.uid, owned.gid = 2, 0o4755, 1234, 5678
        owned.pax_headers = {
            "SCHILY.xattr.trusted.note": "kept",
            "SCHILY.xattr.trusted.overlay.opaque": "y",
        }
        add(owned, b"ok")
    return buf.getvalue()


def test_owners_devices_and_xattrs_round_trip(tmp_path: Path) -> None:
    with layerfs.Store(tmp_path / "s", driver="copy") as s:
        info = s.apply(io.BytesIO(_special_tar()))
        root = s.mount(info.name)
        try:
            st = os.lstat(Path(root, "owned"))
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1234, 5678, 0o4755)
            assert os.getxattr(Path(root, "owned"), "trusted.note") == b"kept"
            # A tar must not be able to forge overlay's own metadata.
            assert "trusted.overlay.opaque" not in os.listxattr(Path(root, "owned"))
            assert os.lstat(Path(root, "dev/null")).st_rdev == os.makedev(1, 3)
            assert stat.S_ISFIFO(os.lstat(Path(root, "dev/fifo")).st_mode)
            tree = describe(root, mtimes=True)
        finally:
            s.unmount(info.name)
        exported = b"".join(s.export(info.name))
        again = s.apply(io.BytesIO(exported))
        # Export is canonical: the re-imported layer exports to the same bytes.
        assert b"".join(s.export(again.name)) == exported
        with s.mounted(again.name) as p:
            assert describe(p, mtimes=True) == tree


def test_diff_target_writes_overlay_format(tmp_path: Path) -> None:
    lower = tmp_path / "lower"
    upper = tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    apply_tar(
        io.BytesIO(
            build_tar(
                [
                    ("d", None),
                    ("d/a", b"a"),
                    ("d/b", b"b"),
                    ("gone", b"x"),
                    ("sub", None),
                    ("sub/x", b"x"),
                ]
            )
        ),
        DiffTarget(lower, [], "trusted.overlay.opaque"),
    )
    tar = build_tar(
        [
            (".wh.gone", b""),
            ("sub/.wh..wh..opq", b""),
            ("sub/y", b"y"),
            ("d/c", b"c"),
            ("d/.wh.a", b""),
            (".wh.never-existed", b""),
        ]
    )
    apply_tar(io.BytesIO(tar), DiffTarget(upper, [lower], "trusted.overlay.opaque"))

    gone = os.lstat(upper / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(upper / "sub", "trusted.overlay.opaque") == b"y"
    assert not (upper / "never-existed").exists() and not os.path.lexists(upper / "never-existed")
    assert sorted(os.listdir(upper / "d")) == ["a", "c"]  # a is a whiteout
    # The parent dir copied up into the upper keeps the lower's mode.
    assert stat.S_IMODE(os.lstat(upper / "d").st_mode) == 0o755

    entries = {
        (e.kind, e.path, e.opaque) for e in scan_diff_dir(upper, [lower], "trusted.overlay.opaque")
    }
    assert (ChangeKind.DELETE, "gone", False) in entries
    assert (ChangeKind.DELETE, "d/a", False) in entries
    assert (ChangeKind.ADD, "d/c", False) in entries
    assert (ChangeKind.MODIFY, "sub", True) in entries
    assert (ChangeKind.ADD, "sub/y", False) in entries
