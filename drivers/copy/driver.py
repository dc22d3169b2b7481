"""``CopyDriver``: snapshots as plain directories, ``<home>/snapshots/<id>``."""

from __future__ import annotations

import os
from pathlib import Path

from layerfs import errors
from layerfs._fstree import copy_tree, tree_usage
from layerfs._sys.tree import remove_tree
from layerfs._types import Mount, Usage
from layerfs.driver import Capabilities, Driver, SnapshotRef


class CopyDriver(Driver):
    """Full copies; see the package docstring.

    Layout: ``snapshots/<id>`` holds the whole tree of snapshot ``id``. A
    new snapshot is built in ``staging/<id>`` and renamed into place, so a
    crash never leaves a half-copied tree under ``snapshots/``.
    """

    name = "copy"
    capabilities = Capabilities(direct_path=True)

    def __init__(self, home: Path, options: dict[str, str], state: object) -> None:  # type: ignore[override]
        super().__init__(home, options, state)  # type: ignore[arg-type]
        if self.options:
            raise errors.InvalidArgument(
                f"the copy driver takes no options, got {sorted(self.options)}"
            )
        for sub in ("snapshots", "staging"):
            (self.home / sub).mkdir(exist_ok=True, mode=0o700)

    def _path(self, snap_id: str) -> Path:
        return self.home / "snapshots" / snap_id

    def create(self, snap: SnapshotRef) -> None:
        """Copy the parent's tree (or make an empty one) as ``snap``'s tree."""
        staging = self.home / "staging" / snap.id
        remove_tree(staging)
        staging.mkdir(mode=0o755)
        try:
            if snap.parents:
                copy_tree(self._path(snap.parents[0]), staging)
            os.rename(staging, self._path(snap.id))
        except OSError as exc:
            remove_tree(staging)
            raise errors.from_oserror(exc, f"copy parent tree for snapshot {snap.key!r}") from exc

    def commit(self, snap: SnapshotRef) -> None:
        """Nothing to do: a committed tree is simply never written again."""

    def remove(self, snap_id: str) -> None:
        """Delete the tree (and any staging leftover)."""
        remove_tree(self.home / "staging" / snap_id)
        remove_tree(self._path(snap_id))

    def mounts(self, snap: SnapshotRef) -> list[Mount]:
        """A bind mount of the tree, read-only unless the snapshot is active."""
        mode = "rw" if snap.kind.value == "active" else "ro"
        return [Mount("bind", str(self._path(snap.id)), ("rbind", mode))]

    def direct_path(self, snap: SnapshotRef) -> Path:
        """The tree itself, for every snapshot: no mount is needed to use it."""
        return self._path(snap.id)

    def usage(self, snap: SnapshotRef) -> Usage:
        """Everything in the tree: a copy shares nothing with its parent (bar reflinks)."""
        return tree_usage(self._path(snap.id))

    def status(self) -> dict[str, object]:
        """The driver name and where trees live."""
        return {"driver": self.name, "home": str(self.home)}

    def check(self, known_ids: set[str], repair: bool) -> list[str]:
        """Report (and with ``repair`` delete) trees and staging dirs of unknown ids."""
        problems = []
        for sub in ("snapshots", "staging"):
            for entry in sorted(os.listdir(self.home / sub)):
                if sub == "snapshots" and entry in known_ids:
                    continue
                problems.append(f"copy: {sub}/{entry} belongs to no snapshot; repair deletes it")
                if repair:
                    remove_tree(self.home / sub / entry)
        return problems
