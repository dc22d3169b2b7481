"""A layer bigger than the free space: ``NoSpace``, nothing kept, the space comes back."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

import layerfs
from layerfs import errors
from layerfs.testing.differential import clear
from layerfs.testing.suite import _unmount_everything, build_tar

FS_SIZE = 96 << 20
FILE_SIZE = 20 << 20
FILES = 10  # 200 MiB of data in all


class BigLayer(io.RawIOBase):
    """A layer tar of ``FILES`` files of ``FILE_SIZE`` bytes, made while it is read."""

    def __init__(self) -> None:
        parts: list[bytes | int] = []
        for i in range(FILES):
            info = tarfile.TarInfo(f"big/{i}")
            info.size, info.mode, info.mtime = FILE_SIZE, 0o644, 1_700_000_000
            parts += [info.tobuf(tarfile.PAX_FORMAT), FILE_SIZE]  # ints: that many bytes
        parts.append(1024)
        self._parts = parts

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray | memoryview) -> int:  # type: ignore[override]
        while self._parts:
            head = self._parts[0]
            if isinstance(head, bytes):
                n = min(len(buf), len(head))
                buf[:n] = head[:n]
                self._parts[0] = head[n:] if n < len(head) else b""
            else:
                n = min(len(buf), head)
                buf[:n] = bytes(n)
                self._parts[0] = head - n
            if self._parts[0] in (b"", 0):
                self._parts.pop(0)
            if n:
                return n
        return 0


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 96 MiB ext4 filesystem on a loop device."""
    image = tmp_path / "small.img"
    mnt = tmp_path / "small"
    mnt.mkdir()
    with open(image, "wb") as f:
        f.truncate(FS_SIZE)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.mark.parametrize(
    ("driver", "options"),
    [("copy", {}), ("overlay", {}), ("fuse", {}), ("fuse", {"passthrough": "off"})],
    ids=["copy", "overlay", "fuse", "fuse-nopassthrough"],
)
def test_layer_bigger_than_free_space_is_nospace(
    small_fs: Path, driver: str, options: dict[str, str]
) -> None:
    store = layerfs.Store(small_fs / "store", driver=driver, options=options)
    try:
        base = store.apply(io.BytesIO(build_tar([("keep", b"k")])))
        before = _free(small_fs)
        with pytest.raises(errors.NoSpace, match="big/"):
            store.apply(io.BufferedReader(BigLayer(), 1 << 20), parent=base.name)
        assert [i.name for i in store.walk()] == [base.name]
        assert store.check() == []
        # The half-written layer is gone: (nearly) all the space is back.
        assert _free(small_fs) >= before - (1 << 20)
        top = store.apply(io.BytesIO(build_tar([("after", b"a")])), parent=base.name)
        assert top.parent == base.name
    finally:
        _unmount_everything(store)
        clear(store)
        store.close()
