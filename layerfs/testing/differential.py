"""The differential layer test: random layer stacks, every driver, one reference model.

``layer_stacks()`` is a Hypothesis strategy for stacks of 1-6 layers built
from the ingredients that have gone wrong before: whiteouts and opaque
markers in any order, files replacing directories and back, hard links
(also to a name whited out earlier in the same layer), symlinks and paths
through them. ``Differential.check(stack)`` applies a stack on each store
and compares each store's tree with ``model.Tree``; then it exports every
layer from each store and applies the exports on every other store, and
compares again.

Bind it to stores in a test::

    @with_regressions
    @given(stack=layer_stacks())
    def test_layers(stores):
        Differential(stores, privileged=True).check(stack)

A small name space (``a``, ``b``, ``d``, three deep) makes paths collide
often, which is where the rules matter.
"""

from __future__ import annotations

import contextlib
import io
import tarfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, settings
from hypothesis import strategies as st

import layerfs
from layerfs import errors
from layerfs.testing.model import OPAQUE, WHITEOUT, Entry, Refused, Tree, normalise, sanitise
from layerfs.testing.suite import _unmount_everything
from layerfs.testing.trees import describe, diff_descriptions

NAMES = ("a", "b", "d")
MTIME = 1_700_000_000
Layer = list[Entry]
OPAQUE_IN_D = f"d/{OPAQUE}"

_paths = st.lists(st.sampled_from(NAMES), min_size=1, max_size=3).map("/".join)
_ids = st.sampled_from([0, 1000])
_xattrs = st.sampled_from([(), (("user.k", b"v"),), (("user.k", b"w"), ("user.z", b""))])
# Same-size contents with different bytes catch diffs that trust size and mtime.
_data = st.sampled_from([b"", b"1", b"2", b"22", b"x" * 3000])
_link_targets = st.sampled_from(
    ["a", "b", "d", "/d", "d/b", "../d", "/d/../a", "/", "..", "d/d", "b/../d"]
)


def _whiteout_name(path: str) -> str:
    head, _, base = path.rpartition("/")
    return f"{head}/{WHITEOUT}{base}" if head else WHITEOUT + base


entries = st.one_of(
    st.builds(
        Entry,
        name=_paths,
        kind=st.just("file"),
        data=_data,
        mode=st.sampled_from([0o644, 0o600, 0o755, 0o4755]),
        uid=_ids,
        gid=_ids,
        xattrs=_xattrs,
    ),
    st.builds(
        Entry,
        name=_paths,
        kind=st.just("dir"),
        mode=st.sampled_from([0o755, 0o700, 0o751]),
        uid=_ids,
        gid=_ids,
        xattrs=_xattrs,
    ),
    st.builds(Entry, name=_paths, kind=st.just("symlink"), target=_link_targets, uid=_ids),
    st.builds(Entry, name=_paths, kind=st.just("hardlink"), target=_paths),
    st.builds(Entry, name=_paths.map(_whiteout_name), kind=st.just("marker")),
    st.builds(
        Entry,
        name=st.one_of(st.just(""), _paths).map(lambda p: f"{p}/{OPAQUE}" if p else OPAQUE),
        kind=st.just("marker"),
    ),
)


def layer_stacks(max_layers: int = 6, max_entries: int = 8) -> st.SearchStrategy[list[Layer]]:
    """Stacks of 1..``max_layers`` layers, each of 1..``max_entries`` entries.

    Entries the model would refuse are dropped (``model.sanitise``) except,
    in about one stack in five, in the top layer: that layer must then be
    refused by every driver.
    """
    raw = st.lists(
        st.lists(entries, min_size=1, max_size=max_entries), min_size=1, max_size=max_layers
    )
    return st.tuples(raw, st.integers(0, 4)).map(lambda t: sanitise(t[0], t[1] == 0))


def _f(name: str, data: bytes = b"1") -> Entry:
    return Entry(name, "file", data=data)


def _d(name: str) -> Entry:
    return Entry(name, "dir", mode=0o755)


def _m(name: str) -> Entry:
    return Entry(name, "marker")


def _l(name: str, target: str) -> Entry:
    return Entry(name, "hardlink", target=target)


#: Stacks that went wrong once, each on some driver: always tried first.
REGRESSIONS: list[list[Layer]] = [
    # A directory made where a whiteout stood must be opaque (overlay, fuse).
    [[_d("d"), _f("d/y")], [_m(".wh.d"), _d("d"), _f("d/x")]],
    # An opaque marker after the directory entries drops d/sub/old (copy).
    [
        [_d("d"), _d("d/sub"), _f("d/sub/old"), _f("d/keep")],
        [_d("d"), _d("d/sub"), _m(OPAQUE_IN_D)],
    ],
    # An opaque marker keeps its own layer's entries and implied dirs (copy).
    [[_d("d"), _f("d/old")], [_f("d/sub/f"), _m(OPAQUE_IN_D)]],
    # Same size and mtime, other bytes: the tree diff must look at the data (copy export).
    [[_f("a", b"1")], [_f("a", b"2")]],
    # Linking to a lower file with several names joins all of them (overlay, fuse).
    [[_f("a"), _l("b", "a")], [_l("c", "a")]],
    # A link group that changes members but not size: export both names (copy export).
    [[_f("a"), _l("b", "a"), _f("d/x")], [_f("b", b"2"), _l("c", "a"), _m(OPAQUE_IN_D)]],
    # Directory times are set only on directories still standing (all).
    [[_d("a"), _d("a/a"), _f("a", b"")]],
    [[_d("a"), _d("a"), _d("a/a"), Entry("a", "symlink", target="a")]],
    # An opaque root keeps a name this layer linked to itself: overlay ignores
    # an opaque mark on the upper root, fuse did not (overlay format).
    [[_f("d", b"2"), _f("b/x")], [_l("d", "d"), _m(OPAQUE)]],
    # A lower file linked to itself is this layer's: an opaque marker keeps it (overlay, fuse).
    [
        [_d("d"), _f("d/f"), Entry("d/s", "symlink", target="f")],
        [_l("d/f", "d/f"), _l("d/s", "d/s"), _m(OPAQUE_IN_D)],
    ],
    # A hard link may not replace the directory that holds its target (copy).
    [[_f("a/a/a"), _l("a", "a/a/a")]],
    # A directory over a directory drops xattrs the new entry lacks (copy export).
    [
        [Entry("d/d", "dir", mode=0o755, xattrs=(("user.k", b"w"),))],
        [_m(OPAQUE), _d("d/d")],
    ],
    # Relinking a name to a lower file it is already a link of: the copy-up of the
    # target brings this name up too (overlay's diff dir said "File exists").
    [[_f("b"), _d("a"), _d("a/b"), _l("a/b/a", "b")], [_l("a/b/a", "b")]],
]


#: The rows of the table that started the model: wrong on some driver each.
TABLE_ROWS = REGRESSIONS[:3]


def with_stacks(stacks: Sequence[list[Layer]]) -> Any:
    """A decorator for a ``@given(stack=...)`` test that tries ``stacks`` first."""

    def decorate(test: Any) -> Any:
        for stack in reversed(stacks):
            test = example(stack=stack)(test)
        return test

    return decorate


#: Decorates a ``@given(stack=...)`` test to try every ``REGRESSIONS`` stack first.
with_regressions = with_stacks(REGRESSIONS)


def tar_of(layer: Sequence[Entry]) -> bytes:
    """The layer tar (PAX) of ``layer``'s entries, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in layer:
            info = tarfile.TarInfo(e.name)
            info.mtime = MTIME
            info.mode, info.uid, info.gid = e.mode, e.uid, e.gid
            info.pax_headers = {
                "SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in e.xattrs
            }
            data = None
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, e.target, 0o777
            elif e.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, e.target
            else:
                info.size = len(e.data)
                data = io.BytesIO(e.data)
            tar.addfile(info, data)
    return buf.getvalue()


def format_stack(stack: Sequence[Layer]) -> str:
    """The stack as readable lines, for failure messages and regression examples."""
    lines = []
    for i, layer in enumerate(stack):
        lines.append(f"layer {i}:")
        for e in layer:
            extra = f" -> {e.target}" if e.target else ""
            lines.append(f"  {e.kind:8} {e.name}{extra} mode={e.mode:o} ids={e.uid}:{e.gid}")
    return "\n".join(lines)


class Differential:
    """Applies stacks on several stores and compares them with the model.

    Args:
        stores: name -> an open store (one per driver or driver setting).
        privileged: whether owners from the tar are kept (root) or not.
    """

    def __init__(self, stores: Mapping[str, layerfs.Store], privileged: bool) -> None:
        self.stores = dict(stores)
        self.privileged = privileged

    def expected(self, stack: Sequence[Layer]) -> tuple[list[dict[str, Any]], int]:
        """The model's tree after each layer, and how many layers it accepts."""
        tree = Tree(self.privileged)
        trees = []
        for layer in stack:
            try:
                tree.apply(layer)
            except Refused:
                break
            trees.append(tree.describe())
        return trees, len(trees)

    def tree(self, store: layerfs.Store, name: str) -> dict[str, Any]:
        """The tree of the committed ``name`` as a mounted view shows it."""
        key = f"diff-view-{uuid.uuid4().hex[:8]}"
        store.view(key, name)
        try:
            with store.mounted(key) as root:
                return normalise(describe(root))
        finally:
            store.remove(key)

    def apply_all(
        self, where: str, tars: Sequence[bytes], accepted: int, stack: Sequence[Layer]
    ) -> str | None:
        """Apply ``tars`` in order on store ``where``; the first refused one must be the model's."""
        store = self.stores[where]
        parent = None
        for i, data in enumerate(tars):
            if i == accepted:
                with pytest.raises(errors.InvalidArgument):
                    store.apply(io.BytesIO(data), parent=parent)
                return parent
            parent = store.apply(io.BytesIO(data), parent=parent).name
        return parent

    def compare(self, where: str, name: str | None, want: dict[str, Any], what: str) -> None:
        if name is None:
            return
        got = self.tree(self.stores[where], name)
        problems = diff_descriptions(want, got)
        assert not problems, f"{what} on {where} differs from the model:\n" + "\n".join(
            problems[:20]
        )

    def check(self, stack: Sequence[Layer]) -> None:
        """Apply ``stack`` everywhere, compare; export from each store, apply on the others."""
        trees, accepted = self.expected(stack)
        tars = [tar_of(layer) for layer in stack]
        chains: dict[str, list[str]] = {}
        try:
            for where, store in self.stores.items():
                top = self.apply_all(where, tars, accepted, stack)
                if top is not None:
                    self.compare(where, top, trees[accepted - 1], "the applied stack")
                    chain = [top]
                    while len(chain) < accepted:
                        parent = store.stat(chain[-1]).parent
                        assert parent is not None
                        chain.append(parent)
                    chains[where] = chain[::-1]
            for source, chain in chains.items():
                exported = [b"".join(self.stores[source].export(n)) for n in chain]
                for where in self.stores:
                    if where == source:
                        continue
                    top = self.apply_all(where, exported, len(exported), stack)
                    self.compare(where, top, trees[accepted - 1], f"the export from {source}")
        finally:
            for store in self.stores.values():
                clear(store)


def clear(store: layerfs.Store) -> None:
    """Remove every snapshot, children first."""
    while True:
        infos = list(store.walk())
        if not infos:
            return
        parents = {i.parent for i in infos}
        for info in infos:
            if info.name not in parents:
                store.remove(info.name)


@contextlib.contextmanager
def open_stores(
    base: Path, specs: Mapping[str, tuple[str, Mapping[str, str]]]
) -> Iterator[dict[str, layerfs.Store]]:
    """Open one store per ``name: (driver, options)`` under ``base``.

    On exit every store's mounts and snapshots go, and each store's
    ``check()`` must find nothing: a comparison that left a store damaged
    fails even when every tree matched.
    """
    opened: dict[str, layerfs.Store] = {}
    try:
        for name, (driver, options) in specs.items():
            opened[name] = layerfs.Store(base / name, driver=driver, options=dict(options))
        yield opened
    finally:
        for store in opened.values():
            _unmount_everything(store)
            clear(store)
            problems = store.check()
            store.close()
            assert not problems, problems


def differential_settings(examples: int, **extra: Any) -> Any:
    """Hypothesis settings for a differential test: no deadline, slow examples welcome."""
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        **extra,
    )


__all__ = [
    "Differential",
    "REGRESSIONS",
    "clear",
    "differential_settings",
    "entries",
    "format_stack",
    "layer_stacks",
    "open_stores",
    "tar_of",
    "with_regressions",
    "with_stacks",
    "TABLE_ROWS",
]
