"""containers: image unpack and container start through containerd, layerfs as its snapshotter.

Each column runs its own containerd (root, state and sockets on the
column's scratch filesystem). The store columns (``overlay``, ``fuse``,
``copy``...) are served to it by ``layerfs serve`` as a proxy
snapshotter; the ``native`` column measures containerd's *builtin*
``overlayfs`` snapshotter, so the ratio column reads "layerfs through
the proxy vs containerd's own overlay". Rows marked ``containerd native``
are containerd's builtin ``native`` snapshotter (full copies), measured
on the native column only.

One round, per image (busybox, and a 4-layer Debian minbase):
``ctr images import`` (unpack into the snapshotter; timed), then
``ctr run --rm IMAGE ID true`` (timed, from the command to its exit), then
the image is removed and garbage-collected (untimed). After the round,
the resident memory of ``layerfs serve`` is read (``VmRSS``).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from ..columns import spec
from ..stats import Metric
from ..targets import StoreTarget, Target
from ..workload import Timer, Workload

IMAGES = {
    "busybox": "docker.io/layerfs/busybox:latest",
    "debian": "docker.io/layerfs/debian:bookworm",
}
BUILTIN_NATIVE = "containerd native"


def _build_image(ctx_dir: Path, image: str) -> Path:
    from layerfs.testing import oci

    out = ctx_dir / f"{image}.tar"
    layers = oci.busybox_image_layers() if image == "busybox" else oci.debian_image_layers()
    oci.write_image(out, IMAGES[image], layers)
    return out


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no VmRSS")


class ContainersWorkload(Workload):
    """Unpack and start-to-exit of `true` through containerd (ms), serve's memory (MiB)."""

    name = "containers"
    title = (
        "containerd: image unpack and `ctr run` of `true` to its exit (ms), layerfs serve RSS "
        "(MiB); native column = containerd's builtin overlayfs"
    )
    max_runs = {"quick": 1, "default": 3, "full": 5}
    sizes = {
        "quick": {"images": ("busybox",)},
        "default": {"images": ("busybox", "debian")},
        "full": {"images": ("busybox", "debian")},
    }

    def metrics(self) -> list[Metric]:
        out = []
        for image in self.size["images"]:
            out += [Metric(f"unpack {image}", "ms"), Metric(f"start {image}", "ms")]
        out.append(Metric("serve RSS", "MiB", ratio=False))
        for image in self.size["images"]:
            out += [
                Metric(f"unpack {image}, {BUILTIN_NATIVE}", "ms", ratio=False),
                Metric(f"start {image}, {BUILTIN_NATIVE}", "ms", ratio=False),
            ]
        return out

    def not_for(self, target: Target) -> str | None:
        """Store columns (and native) only, and not devmapper yet."""
        if not target.native and not isinstance(target, StoreTarget):
            return "does not apply: only store columns can be served to containerd"
        if isinstance(target, StoreTarget) and target.driver == "devmapper":
            return (
                "not measured on the devmapper column yet (tests/vm runs containerd "
                "on devmapper, the bench does not serve it)"
            )
        return None

    def setup(self, target: Target) -> None:
        from layerfs.testing.containerd import Containerd, Serve

        tars = {
            i: self.ctx.shared_input(
                f"image-{i}", functools.partial(_build_image, self.ctx.workdir, i)
            )
            for i in self.size["images"]
        }
        base = target.fs.mountpoint / "containers"
        base.mkdir(exist_ok=True)
        # unix socket paths must stay short: the scratch mountpoint may be deep.
        sockets = Path(tempfile.mkdtemp(prefix="layerfs-bench-", dir="/run"))
        state: dict[str, Any] = {"tars": tars, "sockets": sockets, "serve": None}
        self.state[target.name] = state
        token = target.cleanup.push(f"stop containerd of {target.name}", lambda: self._stop(state))
        state["token"] = token
        proxies = {}
        if isinstance(target, StoreTarget):
            options = spec(target.name).options  # fuse-nopt: passthrough off
            sock = sockets / "serve.sock"
            root = base / "serve-store"
            state["serve"] = Serve(root, target.driver, sock, base / "serve.log", options)
            proxies["layerfs"] = sockets / "serve.sock"
            state["snapshotters"] = {"": "layerfs"}
        else:
            state["snapshotters"] = {"": "overlayfs", BUILTIN_NATIVE: "native"}
        state["ctd"] = Containerd(base / "containerd", proxies, sockets / "containerd.sock")

    def run(self, target: Target) -> dict[str, float]:
        state = self.state[target.name]
        ctd = state["ctd"]
        out: dict[str, float] = {}
        for suffix, snapshotter in state["snapshotters"].items():
            tail = f", {suffix}" if suffix else ""
            for image in self.size["images"]:
                ref = IMAGES[image]
                with Timer() as unpack:
                    ctd.ctr(
                        "images", "import", "--snapshotter", snapshotter, str(state["tars"][image])
                    )
                name = f"bench-{uuid.uuid4().hex[:10]}"
                with Timer() as start:
                    res = ctd.run(ref, name, snapshotter, "true")
                if res.returncode != 0:
                    raise RuntimeError(f"ctr run on {snapshotter} failed: {res.stderr.strip()}")
                ctd.ctr("images", "rm", "--sync", ref)
                out[f"unpack {image}{tail}"] = unpack.seconds * 1000
                out[f"start {image}{tail}"] = start.seconds * 1000
        if state["serve"] is not None:
            out["serve RSS"] = _rss_mib(state["serve"].proc.pid)
        return out

    def teardown(self, target: Target) -> None:
        state = self.state.get(target.name)
        if state is not None:
            target.cleanup.discard(state["token"])
            self._stop(state)
        super().teardown(target)

    @staticmethod
    def _stop(state: dict[str, Any]) -> None:
        try:
            if state.get("ctd") is not None:
                state["ctd"].stop()
        finally:
            if state.get("serve") is not None:
                state["serve"].stop()
            with contextlib.suppress(OSError):
                shutil.rmtree(state["sockets"])


WORKLOAD = ContainersWorkload
