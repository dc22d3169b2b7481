"""Deep images on the overlay driver, past the page that containerd's mount(2) options fit in.

Up to about 430 layers containerd mounts layerfs's overlay itself (its own
lowerdir shortening plus layerfs's short links); deeper ones are mounted by
``layerfs serve`` with the new mount API and handed over as a bind mount.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from layerfs import Store
from layerfs.snapshotter._mounts import fits_containerd
from layerfs.testing import oci


@pytest.mark.parametrize("depth", [150, 460])
def test_deep_image_runs_on_overlay(make_stack, tmp_path: Path, depth: int) -> None:
    stack = make_stack(["overlay"])
    name = f"docker.io/layerfs/deep{depth}:latest"
    tar = tmp_path / "deep.tar"
    oci.write_image(tar, name, oci.deep_image_layers(depth))
    stack.ctd.ctr("images", "import", "--snapshotter", "layerfs-overlay", str(tar), timeout=1800)
    with Store(stack.servers["overlay"].root) as store:
        top = max(store.walk("kind==committed"), key=lambda i: len(_chain(store, i.name)))
        assert len(_chain(store, top.name)) == depth + 2
        # The page-size limit is really crossed (or not) at these depths.
        store.view("probe", top.name)
        mounts = store.mounts("probe")
        assert fits_containerd(mounts) == (depth < 430)
        # Even at 150 layers the plain options pass a page: containerd had to shorten them.
        assert sum(len(o) + 1 for o in mounts[0].options) > 4096
        store.remove("probe")
    script = f'test "$(ls /deep)" = "$(printf "{depth}\\nbase")" && cat /deep/{depth}'
    assert stack.ctd.run_output(name, "layerfs-overlay", script).strip() == str(depth)
    stack.ctd.ctr("images", "rm", "--sync", name)
    with Store(stack.servers["overlay"].root) as store:
        assert list(store.walk()) == []
        assert store.check() == []


def _chain(store: Store, name: str) -> list[str]:
    out = [name]
    while (parent := store.stat(out[-1]).parent) is not None:
        out.append(parent)
    return out
