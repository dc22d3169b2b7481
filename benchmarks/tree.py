"""Realistic layer contents: a tar built from a real tree on this machine.

The Python standard library is on every machine that runs layerfs and has
the mix of sizes of an image layer: many small sources, some larger
modules and shared objects, nested directories. ``build_tree_tar`` copies
the first files of it (in sorted walk order, skipping caches and
installed packages) until a file or byte budget is reached.
"""

from __future__ import annotations

import dataclasses
import os
import sysconfig
import tarfile
from pathlib import Path

_SKIP_DIRS = {"__pycache__", "site-packages", "dist-packages"}
#: Single files larger than this are skipped so one big .so cannot eat the budget.
MAX_FILE = 16 << 20


@dataclasses.dataclass(frozen=True)
class TreeTar:
    """A layer tar on disk.

    Attributes:
        path: the uncompressed tar file.
        files: regular files in it.
        bytes: total size of those files.
        paths: the regular files' paths inside the tar.
    """

    path: Path
    files: int
    bytes: int
    paths: tuple[str, ...]


def source_roots() -> list[Path]:
    """Return the trees files are taken from, the standard library first."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path("/usr/lib/python3"), Path("/usr/share")]
    return [r for r in roots if r.is_dir()]


def build_tree_tar(dest: Path, max_files: int, max_bytes: int) -> TreeTar:
    """Write a tar of up to ``max_files`` files / ``max_bytes`` bytes from ``source_roots``.

    Args:
        dest: the tar file to write.
        max_files: stop after this many regular files.
        max_bytes: stop before the files' total size passes this.

    Returns:
        What was written.
    """
    files = 0
    total = 0
    paths: list[str] = []
    seen_dirs: set[str] = set()
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for n, root in enumerate(source_roots()):
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
                for fname in sorted(filenames):
                    if files >= max_files or total >= max_bytes:
                        return TreeTar(dest, files, total, tuple(paths))
                    src = Path(dirpath) / fname
                    try:
                        st = src.lstat()
                    except OSError:
                        continue
                    if not src.is_file() or src.is_symlink() or st.st_size > MAX_FILE:
                        continue
                    if total + st.st_size > max_bytes:
                        continue
                    rel = f"t{n}/{src.relative_to(root).as_posix()}"
                    _add_parents(tar, rel, seen_dirs)
                    try:
                        with open(src, "rb") as f:
                            info = tar.gettarinfo(fileobj=f, arcname=rel)
                            info.uid = info.gid = 0
                            info.uname = info.gname = "root"
                            tar.addfile(info, f)
                    except OSError:
                        continue
                    files += 1
                    total += st.st_size
                    paths.append(rel)
    return TreeTar(dest, files, total, tuple(paths))


def _add_parents(tar: tarfile.TarFile, rel: str, seen: set[str]) -> None:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        d = "/".join(parts[:i])
        if d in seen:
            continue
        seen.add(d)
        info = tarfile.TarInfo(d)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
