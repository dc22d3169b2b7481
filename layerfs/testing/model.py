"""A reference model of OCI layer application, in plain Python data.

It is the executable form of the rules every driver must follow, small
enough to check by reading. Drivers are compared with it by the
differential test (``layerfs.testing.differential``); it lives in the
package, not in ``tests/``, so that a third-party driver can run the same
comparison against itself, like the snapshot suite.

The rules (OCI image-spec "Applying changesets", as containerd applies
them), entry by entry in tar order:

- ``<dir>/.wh.<name>`` removes ``<name>`` as the lower layers left it:
  if this layer has not written it, it goes with everything below; if it
  is a directory this layer wrote (or wrote inside), only what the lower
  layers put below it goes. Either way this layer's own entries stay.
- ``<dir>/.wh..wh..opq`` removes everything the lower layers put below
  ``<dir>`` and keeps this layer's entries; ``<dir>`` is made if missing.
- Any other entry replaces what is at its path, except that a directory
  over a directory keeps its contents and takes all the entry's metadata
  (xattrs it lacks are removed: otherwise an export could not say that a
  directory lost an xattr).
- Directory parts resolve inside the root: symlinks are followed, an
  absolute target restarts at the root, ``..`` stops there, at most 40
  links; a missing directory is made (mode 0755, the applying user's
  ids); a non-directory in the way is an error.
- A hard link joins the existing non-directory its target names now; a
  missing target, or one inside the directory the link replaces, is an error.

An error means the whole layer is refused (``InvalidArgument``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
from collections.abc import Iterable, Sequence
from typing import Any

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
MAX_LINKS = 40

Path = tuple[str, ...]


class Refused(Exception):
    """The model refuses the layer; a driver must raise ``InvalidArgument``."""


@dataclasses.dataclass
class Inode:
    """What hard links share: the file's data and metadata."""

    data: bytes
    mode: int
    uid: int
    gid: int
    xattrs: dict[str, bytes]


@dataclasses.dataclass
class Node:
    """One name in the tree: a directory, a symlink or a file (pointing at its inode)."""

    kind: str  # "dir", "symlink" or "file"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    xattrs: dict[str, bytes] = dataclasses.field(default_factory=dict)
    target: str = ""
    inode: Inode | None = None


@dataclasses.dataclass(frozen=True)
class Entry:
    """One tar entry of a layer.

    Attributes:
        name: the member name ('/'-separated, relative).
        kind: "file", "dir", "symlink", "hardlink", or "marker" (a whiteout
            or opaque marker: an empty file whose name says what it does).
        data: file contents.
        mode, uid, gid: metadata of files and directories.
        xattrs: ``user.*`` extended attributes of files and directories.
        target: symlink target or hard-link target name.
    """

    name: str
    kind: str
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    xattrs: tuple[tuple[str, bytes], ...] = ()
    target: str = ""


class Tree:
    """A root directory's contents: path -> ``Node``; the root itself is implicit."""

    def __init__(self, privileged: bool = True) -> None:
        self.nodes: dict[Path, Node] = {}
        self.privileged = privileged

    def copy(self) -> Tree:
        """A deep copy that keeps hard-link sharing."""
        out = Tree(self.privileged)
        inodes: dict[int, Inode] = {}
        for path, node in self.nodes.items():
            new = dataclasses.replace(node, xattrs=dict(node.xattrs))
            if node.inode is not None:
                old = node.inode
                if id(old) not in inodes:
                    inodes[id(old)] = dataclasses.replace(old, xattrs=dict(old.xattrs))
                new.inode = inodes[id(old)]
            out.nodes[path] = new
        return out

    # -- the rules -------------------------------------------------------------

    def _ids(self, e: Entry) -> tuple[int, int]:
        return (e.uid, e.gid) if self.privileged else (os.geteuid(), os.getegid())

    def _is_dir(self, path: Path) -> bool:
        return not path or (path in self.nodes and self.nodes[path].kind == "dir")

    def remove(self, path: Path) -> None:
        """Remove ``path`` and everything below it."""
        for p in [p for p in self.nodes if p[: len(path)] == path]:
            del self.nodes[p]

    def resolve(self, parts: list[str], create: bool, made: set[Path]) -> Path | None:
        """Resolve a directory inside the root; None when missing and not ``create``."""
        todo = list(parts)
        done: list[str] = []
        links = 0
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            cur = (*done, part)
            node = self.nodes.get(cur)
            if node is None:
                if not create:
                    return None
                self.nodes[cur] = Node("dir", 0o755, os.geteuid(), os.getegid())
                made.add(cur)
            elif node.kind == "symlink":
                links += 1
                if links > MAX_LINKS:
                    raise Refused("too many symlinks")
                if node.target.startswith("/"):
                    done = []
                todo[:0] = node.target.split("/")
                continue
            elif node.kind != "dir":
                raise Refused(f"{'/'.join(cur)} is not a directory")
            done.append(part)
        return tuple(done)

    def apply(self, entries: Iterable[Entry]) -> None:
        """Apply one layer's entries in order (see the module docstring).

        Raises:
            Refused: the layer is invalid; the tree is then undefined.
        """
        layer = LayerState(self)
        for e in entries:
            layer.entry(e)

    # -- comparing ----------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The tree in ``layerfs.testing.trees.describe`` form, link groups normalised."""
        out: dict[str, Any] = {}
        groups: dict[int, list[str]] = {}
        for path, node in self.nodes.items():
            if node.inode is not None:
                groups.setdefault(id(node.inode), []).append("/".join(path))
        for path, node in self.nodes.items():
            rel = "/".join(path)
            xattrs = node.inode.xattrs if node.inode is not None else node.xattrs
            xs = tuple(sorted(xattrs.items()))
            if node.kind == "dir":
                out[rel] = (stat.S_IFDIR, node.mode, node.uid, node.gid, xs)
            elif node.kind == "symlink":
                out[rel] = (stat.S_IFLNK, 0o777, node.uid, node.gid, node.target, xs)
            else:
                ino = node.inode
                assert ino is not None
                digest = hashlib.sha256(ino.data).hexdigest()
                group = ("link-group", tuple(sorted(groups[id(ino)])))
                out[rel] = (stat.S_IFREG, ino.mode, ino.uid, ino.gid, digest, group, xs)
        return out


def normalise(described: dict[str, Any]) -> dict[str, Any]:
    """Turn ``describe``'s link groups (named by their first path) into sorted member lists."""
    members: dict[str, list[str]] = {}
    for path, desc in described.items():
        if desc[0] == stat.S_IFREG:
            members.setdefault(desc[5][1], []).append(path)
    out = {}
    for path, desc in described.items():
        if desc[0] == stat.S_IFREG:
            desc = (*desc[:5], ("link-group", tuple(sorted(members[desc[5][1]]))), *desc[6:])
        out[path] = desc
    return out


class LayerState:
    """One layer being applied to ``tree``: what the layer has written so far."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.ours: set[Path] = set()

    def copy(self) -> LayerState:
        """An independent copy (tree included), to try an entry out."""
        out = LayerState(self.tree.copy())
        out.ours = set(self.ours)
        return out

    def _mark(self, path: Path) -> None:
        for depth in range(len(path) + 1):
            self.ours.add(path[:depth])

    def _drop_lower(self, d: Path) -> None:
        nodes = self.tree.nodes
        for p in [p for p in nodes if len(p) == len(d) + 1 and p[: len(d)] == d]:
            if p not in self.ours:
                self.tree.remove(p)
            elif nodes[p].kind == "dir":
                self._drop_lower(p)

    def entry(self, e: Entry) -> None:
        """Apply one entry.

        Raises:
            Refused: the entry makes the layer invalid.
        """
        tree = self.tree
        parts = [p for p in e.name.split("/") if p not in ("", ".")]
        if not parts:
            return
        base = parts[-1]
        made: set[Path] = set()
        if base == OPAQUE:
            d = tree.resolve(parts[:-1], True, made)
            assert d is not None
            for p in made:
                self._mark(p)
            self._drop_lower(d)
            return
        if base.startswith(WHITEOUT):
            parent = tree.resolve(parts[:-1], False, made)
            if parent is None:
                return
            path = (*parent, base[len(WHITEOUT) :])
            if path not in tree.nodes:
                return
            if path not in self.ours:
                tree.remove(path)
            elif tree.nodes[path].kind == "dir":
                self._drop_lower(path)
            return
        source: Node | None = None
        if e.kind == "hardlink":
            tparts = [p for p in e.target.split("/") if p not in ("", ".")]
            tparent = tree.resolve(tparts[:-1], False, made) if tparts else None
            tpath = None if tparent is None else (*tparent, tparts[-1])
            source = None if tpath is None else tree.nodes.get(tpath)
            if source is None or source.kind == "dir":
                raise Refused(f"hard link {e.name} -> {e.target}: no such file")
        parent = tree.resolve(parts[:-1], True, made)
        assert parent is not None
        for p in made:
            self._mark(p)
        path = (*parent, base)
        self._mark(path)
        old = tree.nodes.get(path)
        if source is not None and old is source:
            return
        if source is not None and tpath is not None and tpath[: len(path)] == path:
            raise Refused(f"hard link {e.name} -> {e.target}: target inside the replaced dir")
        if old is not None and not (old.kind == "dir" and e.kind == "dir"):
            tree.remove(path)
        uid, gid = tree._ids(e)
        if e.kind == "dir":
            # Over a directory: the entry's metadata, xattrs included, replaces the old.
            node = tree.nodes.setdefault(path, Node("dir"))
            node.mode, node.uid, node.gid, node.xattrs = e.mode, uid, gid, dict(e.xattrs)
        elif e.kind == "file":
            inode = Inode(e.data, e.mode, uid, gid, dict(e.xattrs))
            tree.nodes[path] = Node("file", inode=inode)
        elif e.kind == "symlink":
            tree.nodes[path] = Node("symlink", 0o777, uid, gid, target=e.target)
        elif e.kind == "hardlink":
            assert source is not None
            tree.nodes[path] = dataclasses.replace(source)
        else:
            raise AssertionError(e.kind)


def sanitise(stack: Sequence[Sequence[Entry]], keep_last_refusal: bool) -> list[list[Entry]]:
    """Drop the entries the model refuses, so random stacks stay deep.

    With ``keep_last_refusal`` the last layer is left as generated, so
    stacks whose top layer must be refused are tested too.
    """
    tree = Tree()
    out: list[list[Entry]] = []
    for i, layer in enumerate(stack):
        if keep_last_refusal and i == len(stack) - 1:
            out.append(list(layer))
            break
        state = LayerState(tree)
        kept = []
        for e in layer:
            trial = state.copy()
            try:
                trial.entry(e)
            except Refused:
                continue
            state = trial
            kept.append(e)
        tree = state.tree
        if kept:
            out.append(kept)
    return out or [list(stack[0])]
