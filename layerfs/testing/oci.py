"""OCI images built locally, for tests and the bench that run real containers.

Nothing outside the machine is needed: layers are tars written here with
``tarfile``, images are OCI image layouts packed in one tar (what ``ctr
images import`` reads), and the root filesystems come from the host's
``busybox`` (static) and from ``mmdebstrap`` (Debian's packages).

Facts relied on:

- An OCI image layout holds ``oci-layout``, ``index.json`` and the blobs
  under ``blobs/sha256/``; containerd names an imported image after the
  manifest's ``io.containerd.image.name`` annotation.
- Uncompressed layers (``application/vnd.oci.image.layer.v1.tar``) have
  their digest as diff ID, which saves compressing in every test run.
- Whiteouts are ``.wh.<name>`` entries; ``<dir>/.wh..wh..opq`` hides what
  lower layers have in ``<dir>``. A whiteout in a layer comes before the
  entries that replace the path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "Layer",
    "write_image",
    "busybox_layer",
    "busybox_image_layers",
    "debian_rootfs",
    "debian_image_layers",
    "deep_image_layers",
    "expected_tree",
    "DEBIAN_RECIPE",
]

_LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"
_MTIME = 1_700_000_000
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Layer:
    """An uncompressed OCI layer tar being built in memory, entries in call order."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.PAX_FORMAT)

    def _add(self, info: tarfile.TarInfo, data: bytes | None = None) -> None:
        info.mtime = info.mtime or _MTIME
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data) if data is not None else None)

    def dir(self, path: str, mode: int = 0o755) -> Layer:
        """Add a directory."""
        info = tarfile.TarInfo(path)
        info.type, info.mode = tarfile.DIRTYPE, mode
        self._add(info)
        return self

    def file(self, path: str, data: bytes, mode: int = 0o644) -> Layer:
        """Add a regular file."""
        info = tarfile.TarInfo(path)
        info.size, info.mode = len(data), mode
        self._add(info, data)
        return self

    def symlink(self, path: str, target: str) -> Layer:
        """Add a symbolic link."""
        info = tarfile.TarInfo(path)
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
        self._add(info)
        return self

    def whiteout(self, path: str) -> Layer:
        """Delete ``path`` of the lower layers."""
        head, _, name = path.rpartition("/")
        return self.file(f"{head}/.wh.{name}" if head else f".wh.{name}", b"")

    def opaque(self, path: str) -> Layer:
        """Hide everything lower layers have in the directory ``path`` (added here too)."""
        return self.dir(path).file(f"{path}/.wh..wh..opq", b"")

    def member(self, info: tarfile.TarInfo, data: bytes | None) -> Layer:
        """Add a copy of an entry read from another tar."""
        self._tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return self

    def bytes(self) -> bytes:
        """The finished tar (the layer cannot grow after this)."""
        self._tar.close()
        return self._buf.getvalue()


def _blob(blobs: dict[str, bytes], data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def write_image(
    path: str | os.PathLike[str],
    name: str,
    layers: Iterable[bytes],
    cmd: list[str] | None = None,
) -> str:
    """Write an OCI image layout tar of ``layers`` (bottom first) to ``path``.

    Args:
        path: the tar to write.
        name: the image reference containerd gives it on import
            (``docker.io/layerfs/busybox:latest``).
        layers: uncompressed layer tars.
        cmd: the image's default command.

    Returns:
        The manifest digest.
    """
    blobs: dict[str, bytes] = {}
    descs = []
    diff_ids = []
    for data in layers:
        desc = _blob(blobs, data)
        descs.append({"mediaType": _LAYER_TYPE, **desc})
        diff_ids.append(desc["digest"])
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": [PATH_ENV], "Cmd": cmd or ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    config_desc = _blob(blobs, json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": descs,
    }
    manifest_desc = _blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    tag = name.rpartition(":")[2] if ":" in name.rpartition("/")[2] else "latest"
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    with tarfile.open(path, "w") as tar:

        def put(member: str, data: bytes) -> None:
            info = tarfile.TarInfo(member)
            info.size, info.mtime, info.mode = len(data), _MTIME, 0o644
            tar.addfile(info, io.BytesIO(data))

        put("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        put("index.json", json.dumps(index, sort_keys=True).encode())
        for digest, data in blobs.items():
            put(f"blobs/sha256/{digest.split(':')[1]}", data)
    return str(manifest_desc["digest"])


def expected_tree(layers: Iterable[bytes]) -> dict[str, str]:
    """The tree a container sees on ``layers``: path -> ``find -printf %y`` type letter.

    Paths are relative, without ``./``; whiteouts and opaque markers are
    applied, not listed.
    """
    tree: dict[str, str] = {}
    kinds = {tarfile.DIRTYPE: "d", tarfile.SYMTYPE: "l", tarfile.CHRTYPE: "c"}
    kinds |= {tarfile.BLKTYPE: "b", tarfile.FIFOTYPE: "p"}
    for data in layers:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for info in tar:
                path = os.path.normpath(info.name)
                head, _, base = path.rpartition("/")
                if base == ".wh..wh..opq":
                    below = f"{head}/"
                    for p in [p for p in tree if p.startswith(below)]:
                        del tree[p]
                elif base.startswith(".wh."):
                    gone = f"{head}/{base[4:]}" if head else base[4:]
                    for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                        del tree[p]
                elif path != ".":
                    tree[path] = kinds.get(info.type, "f")
    return tree


# -- busybox ---------------------------------------------------------------------------


def _busybox() -> str:
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError("busybox is not installed (Debian package busybox-static)")


def busybox_layer() -> bytes:
    """A root filesystem with a static busybox and a link per applet."""
    binary = _busybox()
    applets = subprocess.run([binary, "--list"], capture_output=True, text=True, check=True)
    layer = Layer()
    for d in ("bin", "dev", "etc", "proc", "root", "sys", "usr", "usr/bin", "var"):
        layer.dir(d)
    layer.dir("tmp", 0o1777)
    with open(binary, "rb") as f:
        layer.file("bin/busybox", f.read(), 0o755)
    for applet in sorted(set(applets.stdout.split()) - {"busybox"}):
        layer.symlink(f"bin/{applet}", "busybox")
    layer.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")
    layer.file("etc/group", b"root:x:0:\n")
    return layer.bytes()


def busybox_image_layers() -> list[bytes]:
    """busybox, then a data layer, then one that deletes and replaces parts of it.

    What a container sees in ``/data`` afterwards: ``keep`` (``"keep\\n"``),
    ``dir/`` holding only ``new``, ``was-file/`` a directory holding ``inside``,
    and no ``gone`` nor ``dir/old``.
    """
    data = (
        Layer()
        .dir("data")
        .file("data/keep", b"keep\n")
        .file("data/gone", b"gone\n")
        .dir("data/dir")
        .file("data/dir/old", b"old\n")
        .file("data/was-file", b"file\n")
    )
    changes = (
        Layer()
        .dir("data")
        .whiteout("data/gone")
        .opaque("data/dir")
        .file("data/dir/new", b"new\n")
        .whiteout("data/was-file")
        .dir("data/was-file")
        .file("data/was-file/inside", b"inside\n")
    )
    return [busybox_layer(), data.bytes(), changes.bytes()]


def deep_image_layers(depth: int) -> list[bytes]:
    """busybox and ``depth`` more layers: layer ``i`` adds ``/deep/<i>`` and deletes ``/deep/<i-1>``.

    A container then sees only ``/deep/<depth>`` (and ``/deep/base``).
    """
    out = [busybox_layer(), Layer().dir("deep").file("deep/base", b"base\n").bytes()]
    for i in range(1, depth + 1):
        layer = Layer().dir("deep").file(f"deep/{i}", f"{i}\n".encode())
        if i > 1:
            layer.whiteout(f"deep/{i - 1}")
        out.append(layer.bytes())
    return out


# -- Debian ----------------------------------------------------------------------------

#: mmdebstrap arguments of the Debian root; the cache is keyed by their hash.
DEBIAN_RECIPE = (
    "--variant=minbase",
    "--format=tar",
    "bookworm",
)
DEBIAN_MIRROR = "deb http://deb.debian.org/debian bookworm main"
CACHE_DIR = Path(os.environ.get("LAYERFS_TEST_CACHE", "/var/cache/layerfs-tests"))


def debian_rootfs(mirror: str = DEBIAN_MIRROR) -> Path:
    """A Debian minbase root as a tar, built with mmdebstrap once and cached.

    The cache file is named after a hash of the recipe and mirror, so a
    changed recipe builds anew. ``LAYERFS_TEST_CACHE`` moves the cache.
    """
    key = hashlib.sha256(json.dumps([DEBIAN_RECIPE, mirror]).encode()).hexdigest()[:16]
    out = CACHE_DIR / f"debian-{key}.tar"
    if out.exists():
        return out
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(f".partial-{os.getpid()}")
    try:
        subprocess.run(
            ["mmdebstrap", "--quiet", *DEBIAN_RECIPE, str(partial), mirror],
            check=True,
            stdin=subprocess.DEVNULL,
            timeout=1800,
        )
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def _split(rootfs: Path, pick: Callable[[str], int], count: int) -> list[Layer]:
    """Spread the entries of ``rootfs`` over ``count`` layers by ``pick(path)``.

    A hard link goes with its target, so each layer is a valid tar.
    """
    layers = [Layer() for _ in range(count)]
    where: dict[str, int] = {}
    with tarfile.open(rootfs) as tar:
        for info in tar:
            name = os.path.normpath(info.name)
            if name == ".":
                continue
            info.name = name
            if info.islnk():
                info.linkname = os.path.normpath(info.linkname)
                at = where.get(info.linkname, 0)
            else:
                at = pick(name)
            where[name] = at
            f = tar.extractfile(info) if info.isreg() else None
            layers[at].member(info, f.read() if f is not None else None)
    return layers


def _debian_pick(path: str) -> int:
    if path.startswith(("usr/share/doc", "usr/share/man", "usr/share/locale")):
        return 2
    if path.startswith(("usr/lib", "usr/libexec")):
        return 1
    return 0


def debian_image_layers(rootfs: Path | None = None) -> list[bytes]:
    """Debian minbase in four layers; the last deletes and replaces parts of the others.

    Layers: the system without ``usr/lib``; ``usr/lib``; documentation; and
    changes: ``usr/share/doc/dpkg`` deleted, ``usr/share/man`` made opaque
    holding only ``README``, ``etc/debian_version`` deleted and
    ``etc/layerfs-release`` added, ``usr/share/locale`` replaced by a file.
    """
    rootfs = rootfs or debian_rootfs()
    layers = [layer.bytes() for layer in _split(rootfs, _debian_pick, 3)]
    changes = (
        Layer()
        .dir("usr")
        .dir("usr/share")
        .dir("usr/share/doc")
        .whiteout("usr/share/doc/dpkg")
        .opaque("usr/share/man")
        .file("usr/share/man/README", b"only this\n")
        .whiteout("usr/share/locale")
        .file("usr/share/locale", b"a file now\n")
        .dir("etc")
        .whiteout("etc/debian_version")
        .file("etc/layerfs-release", b"layerfs test image\n")
    )
    return [*layers, changes.bytes()]
