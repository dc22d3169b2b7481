"""Layers: applying OCI layer tars to a store, and reading changes back out.

Each function works on a ``Store`` through its private helpers: the store
keeps the records and intents, this module decides how a tar meets the
driver's storage. Two paths, chosen by what the driver offers:

- native: the driver exposes overlay-format diff directories
  (``Driver.diff_dir``) for the snapshot and all its parents; tars are
  written into, and changes read out of, the upper directory alone;
- generic: the snapshot's tree is used directly (``direct_path``) or
  mounted for the duration, and changes come from comparing it with the
  parent's tree, reached the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from . import _owner, _records, errors
from ._apply import DiffTarget, TreeTarget, apply_tar
from ._diff import DiffEntry, compare_trees, scan_diff_dir
from ._export import write_tar
from ._faults import crash_point
from ._overlayfmt.lower import merged_names
from ._records import COMMITTING, READY
from ._streams import DigestReader, chain_id, decompressed
from ._types import Change, ChangeKind, Info, Kind
from .driver import SnapshotRef

if TYPE_CHECKING:
    from ._store import Store

DIFF_ID_LABEL = "layerfs.diff-id"

#: How long ``apply`` waits for another process committing the same layer.
WAIT_FOR_TWIN_S = 60.0


def apply_layer(
    store: Store,
    fileobj: BinaryIO,
    parent: str | None,
    labels: Mapping[str, str],
    max_size: int | None = None,
) -> Info:
    """Unpack a layer tar on ``parent`` and commit it under its chain ID (see ``Store.apply``)."""
    parent_chain = chain_of(store, parent) if parent is not None else None
    digest = DigestReader(decompressed(fileobj), limit=max_size)
    with store._hidden_active(parent) as (rec, ref):
        dd = store._driver.diff_dir(ref)
        lowers = lower_dirs(store, ref) if dd is not None else None
        reader = io.BufferedReader(digest, buffer_size=1 << 20)
        if dd is not None and lowers is not None:
            apply_tar(reader, DiffTarget(dd.path, lowers, dd.opaque_xattr))  # type: ignore[arg-type]
        else:
            with store._temporary_tree(ref) as tree:
                apply_tar(reader, TreeTarget(tree))  # type: ignore[arg-type]
        try:
            digest.read_rest()
        except OSError as exc:
            raise errors.from_oserror(exc, "read the rest of the layer") from exc
        crash_point("apply:extracted")
        name = chain_id(parent_chain, digest.digest)
        usage = store._driver.usage(ref)
        existing = _claim_name(store, rec.id, name, digest.digest, labels)
    if existing is not None:
        # The same layer on the same parent is here already: keep that one.
        store._discard_if_present(rec)
        return existing
    crash_point("apply:marked")
    try:
        committed = SnapshotRef(rec.sid, name, Kind.COMMITTED, ref.parents)
        store._driver.commit(committed)
        store._make_durable(committed)
    except BaseException:
        store._discard(rec)  # leave nothing COMMITTING behind: a retry starts afresh
        raise
    with store._meta.transaction() as db:
        _records.set_state(db, rec.id, READY, None)
        _records.set_usage(db, rec.id, usage.size, usage.inodes)
        return _records.info(db, _records.get(db, name))


def _claim_name(
    store: Store, rec_id: int, name: str, diff_id: str, labels: Mapping[str, str]
) -> Info | None:
    """Name the applied snapshot ``name``, or return the Info of the one already so named.

    Another process applying the same layer may be committing it right
    now: wait for its commit to finish, then use its result.

    Raises:
        errors.Busy: the other commit did not finish in time, or its process died
            (``check(repair=True)`` finishes it).
    """
    deadline = time.monotonic() + WAIT_FOR_TWIN_S
    while True:
        with store._meta.transaction() as db:
            existing = _records.find(db, name)
            if existing is None:
                _records.mark_committed(
                    db,
                    rec_id,
                    name,
                    {**labels, DIFF_ID_LABEL: diff_id},
                    COMMITTING,
                    _owner.current(),
                )
                _records.put_layer_ids(db, rec_id, diff_id, name)
                return None
            if existing.state == READY:
                return _records.info(db, existing)
        if not _owner.is_alive(existing.owner) or time.monotonic() > deadline:
            raise errors.Busy(
                f"layer {name!r} is being {existing.state} by another process that "
                "did not finish; retry, or run check(repair=True) if it died"
            )
        time.sleep(0.02)


def chain_of(store: Store, name: str) -> str:
    """The OCI chain ID of the committed snapshot ``name``, computed once and recorded.

    A layer applied by ``apply`` has it recorded. For a snapshot a user
    committed, its diff ID is the digest of its export (which is
    deterministic), so an applied child's name is the same chain ID
    whatever the parent is called.

    Raises:
        errors.NotFound: no snapshot ``name``.
        errors.FailedPrecondition: ``name`` is not committed.
    """
    rec = store._get(name)
    if rec.kind is not Kind.COMMITTED:
        return name  # the snapshot layer refuses it with a clear message
    with store._meta.transaction(write=False) as db:
        chain = [rec, *_records.ancestors(db, rec)]
        known = [_records.layer_ids(db, r.id) for r in chain]
    # Nearest ancestor with known IDs, then down from there.
    depth = next((i for i, ids in enumerate(known) if ids is not None), len(chain))
    below = known[depth][1] if depth < len(chain) else None  # type: ignore[index]
    for r in reversed(chain[:depth]):
        diff_id = r.labels.get(DIFF_ID_LABEL)
        if diff_id is None or chain_id(below, diff_id) != r.key:
            # Committed by a user (or an old store's label was changed): hash its export.
            digest = hashlib.sha256()
            for chunk in export_layer(store, r.key):
                digest.update(chunk)
            diff_id = "sha256:" + digest.hexdigest()
        below = chain_id(below, diff_id)
        with store._meta.transaction() as db:
            _records.put_layer_ids(db, r.id, diff_id, below)
    assert below is not None
    return below


def lower_dirs(store: Store, ref: SnapshotRef) -> list[Path] | None:
    """The parents' diff directories, nearest first, or None if any is missing."""
    lowers = []
    for pid in ref.parents:
        dd = store._driver.diff_dir(SnapshotRef(pid, pid, Kind.COMMITTED))
        if dd is None:
            return None
        lowers.append(dd.path)
    return lowers


@contextlib.contextmanager
def diff_entries(
    store: Store, key: str
) -> Iterator[tuple[Iterator[DiffEntry], SnapshotRef, list[Path] | None]]:
    """The changes of ``key`` against its parent, by the native path when there is one."""
    rec = store._get(key)
    ref = store._ref_from(rec)
    dd = store._driver.diff_dir(ref)
    lowers = lower_dirs(store, ref) if dd is not None else None
    if dd is not None and lowers is not None:
        yield scan_diff_dir(dd.path, lowers, dd.opaque_xattr), ref, lowers
        return
    with contextlib.ExitStack() as stack:
        new_tree = stack.enter_context(store._temporary_tree(ref))
        old_tree = None
        if rec.parent_id is not None:
            with store._meta.transaction(write=False) as db:
                parent = _records.by_id(db, rec.parent_id)
            assert parent is not None
            old_tree = stack.enter_context(store._temporary_tree(store._ref_from(parent)))
        yield compare_trees(old_tree, new_tree), ref, None


def export_layer(store: Store, name: str) -> Iterator[bytes]:
    """The OCI layer tar of ``name``, in chunks (see ``Store.export``).

    Raises:
        errors.LayerfsError: an ``OSError`` while reading the snapshot,
            wrapped with the path it concerns.
    """
    try:
        with diff_entries(store, name) as (entries, _ref, _lowers):
            yield from write_tar(entries)
    except OSError as exc:
        raise errors.from_oserror(exc, f"export {name!r}: {exc.filename or ''}") from exc


def layer_changes(store: Store, name: str) -> list[Change]:
    """Sorted changes of ``name``; an opaque directory lists what it hides as deletes."""
    out: list[Change] = []
    with diff_entries(store, name) as (entries, ref, lowers):
        dd = store._driver.diff_dir(ref)
        for e in entries:
            out.append(Change(e.kind, e.path))
            if e.opaque and dd is not None and lowers is not None:
                parts = e.path.split("/")
                present = set(os.listdir(os.path.join(dd.path, *parts)))
                for hidden in sorted(merged_names(lowers, parts, dd.opaque_xattr) - present):
                    out.append(Change(ChangeKind.DELETE, f"{e.path}/{hidden}"))
    return sorted(out, key=lambda c: c.path)
