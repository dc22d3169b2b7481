"""containerd on the devmapper driver through ``layerfs serve``: import, run, commit, collect.

The same path as tests/e2e takes for overlay, fuse and copy, here where
dm-thin exists: containerd mounts the thin devices the server returns
(xfs or ext4, ``nouuid``) by itself, in its unpacker and in the runc shim.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
import uuid
from pathlib import Path

from layerfs import Store
from layerfs.testing import oci
from layerfs.testing.containerd import (
    Containerd,
    Serve,
    kill_process_tree_matching,
    unmount_under,
)

IMAGE = "docker.io/layerfs/busybox:latest"
OPTIONS = {"data_size": "1G", "base_size": "64M", "min_free_percent": "1", "udev": "off"}
CHECK_AND_WRITE = """\
test "$(cat /data/keep)" = keep
test ! -e /data/gone
test "$(ls /data/dir)" = new
test "$(cat /data/was-file/inside)" = inside
echo written > /data/written
rm /data/keep
"""


def test_containerd_runs_on_devmapper(tmp_path: Path) -> None:
    sockets = Path(tempfile.mkdtemp(prefix="layerfs-vm-", dir="/run"))
    oci.write_image(tmp_path / "busybox.tar", IMAGE, oci.busybox_image_layers())
    root = tmp_path / "store"
    server = Serve(root, "devmapper", sockets / "dm", tmp_path / "serve.log", OPTIONS, timeout=600)
    ctd = None
    try:
        ctd = Containerd(
            tmp_path / "containerd", {"layerfs-devmapper": sockets / "dm"}, sockets / "c"
        )
        ctd.ctr(
            "images", "import", "--snapshotter", "layerfs-devmapper", str(tmp_path / "busybox.tar")
        )
        name = f"c-{uuid.uuid4().hex[:8]}"
        res = ctd.run(IMAGE, name, "layerfs-devmapper", "sh", "-ec", CHECK_AND_WRITE, rm=False)
        assert res.returncode == 0, res.stdout + res.stderr
        snap = ("snapshots", "--snapshotter", "layerfs-devmapper")
        ctd.ctr(*snap, "commit", f"{name}-done", name)
        ctd.ctr("containers", "rm", name)
        blob = ctd.ctr_bytes(*snap, "diff", f"{name}-done")
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            paths = {m.name.rstrip("/") for m in tar}
        assert {"data/written", "data/.wh.keep"} <= paths
        assert not any(p.startswith("bin/") for p in paths)
        ctd.ctr(*snap, "rm", f"{name}-done")
        ctd.ctr("images", "rm", "--sync", IMAGE)
        # The store is read once the server is down: closing a devmapper store
        # deactivates an idle pool, which must not happen under a live server.
        ctd.stop()
        assert server.stop() == 0
        with Store(root) as store:
            assert list(store.walk()) == []
            assert store.check() == []
    finally:
        if ctd is not None:
            ctd.stop()
        server.stop()
        unmount_under(tmp_path)
        kill_process_tree_matching(str(tmp_path))
        shutil.rmtree(sockets, ignore_errors=True)
