"""Layers: applying OCI layer tars to a store, and reading changes back out.

Each function works on a store's ``StoreContext``: the store keeps the
records and intents, this module decides how a tar meets the driver's
storage. Two paths, chosen by the driver's ``Capabilities``:

- native (``diff_dir``): the driver exposes every snapshot's own changes
  as an overlay-format directory; tars are written into, and changes read
  out of, the upper directory alone, with the parents' as lowers;
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
from typing import BinaryIO

from . import _owner, _records, errors
from ._apply import DiffTarget, TreeTarget, apply_tar
from ._context import StoreContext
from ._diff import DiffEntry, compare_trees, scan_diff_dir
from ._export import write_tar
from ._faults import crash_point
from ._overlayfmt.lower import merged_names
from ._records import COMMITTING, READY
from ._streams import DigestReader, chain_id, decompressed
from ._types import Change, ChangeKind, Info, Kind
from .driver import DiffDir, SnapshotRef

DIFF_ID_LABEL = "layerfs.diff-id"

#: How long ``apply`` waits for another process committing the same layer.
WAIT_FOR_TWIN_S = 60.0


def apply_layer(
    ctx: StoreContext,
    fileobj: BinaryIO,
    parent: str | None,
    labels: Mapping[str, str],
    max_size: int | None = None,
) -> Info:
    """Unpack a layer tar on ``parent`` and commit it under its chain ID (see ``Store.apply``)."""
    parent_chain = chain_of(ctx, parent) if parent is not None else None
    digest = DigestReader(decompressed(fileobj), limit=max_size)
    with ctx.hidden_active(parent) as (rec, ref):
        reader = io.BufferedReader(digest, buffer_size=1 << 20)
        if ctx.driver.capabilities.diff_dir:
            dd = ctx.driver.diff_dir(ref)
            apply_tar(reader, DiffTarget(dd.path, lower_dirs(ctx, ref), dd.opaque_xattr))  # type: ignore[arg-type]
        else:
            with ctx.temporary_tree(ref) as tree:
                apply_tar(reader, TreeTarget(tree))  # type: ignore[arg-type]
        try:
            digest.read_rest()
        except OSError as exc:
            raise errors.from_oserror(exc, "read the rest of the layer") from exc
        crash_point("apply:extracted")
        name = chain_id(parent_chain, digest.digest)
        usage = ctx.driver.usage(ref)
        existing = _claim_name(ctx, rec.id, name, digest.digest, labels)
    if existing is not None:
        # The same layer on the same parent is here already: keep that one.
        ctx.discard_if_present(rec)
        return existing
    crash_point("apply:marked")
    try:
        committed = SnapshotRef(rec.sid, name, Kind.COMMITTED, ref.parents)
        ctx.driver.commit(committed)
        ctx.make_durable(committed)
    except BaseException:
        ctx.discard(rec)  # leave nothing COMMITTING behind: a retry starts afresh
        raise
    with ctx.meta.transaction() as db:
        _records.set_state(db, rec.id, READY, None)
        _records.set_usage(db, rec.id, usage.size, usage.inodes)
        return _records.info(db, _records.get(db, name))


def _claim_name(
    ctx: StoreContext, rec_id: int, name: str, diff_id: str, labels: Mapping[str, str]
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
        with ctx.meta.transaction() as db:
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


def chain_of(ctx: StoreContext, name: str) -> str:
    """The OCI chain ID of the committed snapshot ``name``, computed once and recorded.

    A layer applied by ``apply`` has it recorded. For a snapshot a user
    committed, its diff ID is the digest of its export (which is
    deterministic), so an applied child's name is the same chain ID
    whatever the parent is called.

    Raises:
        errors.NotFound: no snapshot ``name``.
        errors.FailedPrecondition: ``name`` is not committed.
    """
    rec = ctx.get(name)
    if rec.kind is not Kind.COMMITTED:
        return name  # the snapshot layer refuses it with a clear message
    with ctx.meta.transaction(write=False) as db:
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
            for chunk in export_layer(ctx, r.key):
                digest.update(chunk)
            diff_id = "sha256:" + digest.hexdigest()
        below = chain_id(below, diff_id)
        with ctx.meta.transaction() as db:
            _records.put_layer_ids(db, r.id, diff_id, below)
    assert below is not None
    return below


def lower_dirs(ctx: StoreContext, ref: SnapshotRef) -> list[Path]:
    """The parents' diff directories, nearest first (the driver offers ``diff_dir``)."""
    return [ctx.driver.diff_dir(SnapshotRef(pid, pid, Kind.COMMITTED)).path for pid in ref.parents]


@contextlib.contextmanager
def diff_entries(
    ctx: StoreContext, key: str
) -> Iterator[tuple[Iterator[DiffEntry], tuple[DiffDir, list[Path]] | None]]:
    """The changes of ``key`` against its parent, by the native path when there is one.

    Yields:
        The entries, and for the native path the snapshot's diff dir and
        its parents' (None for the generic path).
    """
    rec = ctx.get(key)
    ref = ctx.ref(rec)
    if ctx.driver.capabilities.diff_dir:
        dd = ctx.driver.diff_dir(ref)
        lowers = lower_dirs(ctx, ref)
        yield scan_diff_dir(dd.path, lowers, dd.opaque_xattr), (dd, lowers)
        return
    with contextlib.ExitStack() as stack:
        new_tree = stack.enter_context(ctx.temporary_tree(ref))
        old_tree = None
        if rec.parent_id is not None:
            with ctx.meta.transaction(write=False) as db:
                parent = _records.by_id(db, rec.parent_id)
            assert parent is not None
            old_tree = stack.enter_context(ctx.temporary_tree(ctx.ref(parent)))
        yield compare_trees(old_tree, new_tree), None


def export_layer(ctx: StoreContext, name: str) -> Iterator[bytes]:
    """The OCI layer tar of ``name``, in chunks (see ``Store.export``).

    Raises:
        errors.LayerfsError: an ``OSError`` while reading the snapshot,
            wrapped with the path it concerns.
    """
    try:
        with diff_entries(ctx, name) as (entries, _native):
            yield from write_tar(entries)
    except OSError as exc:
        raise errors.from_oserror(exc, f"export {name!r}: {exc.filename or ''}") from exc


def layer_changes(ctx: StoreContext, name: str) -> list[Change]:
    """Sorted changes of ``name``; an opaque directory lists what it hides as deletes."""
    out: list[Change] = []
    with diff_entries(ctx, name) as (entries, native):
        for e in entries:
            out.append(Change(e.kind, e.path))
            if e.opaque and native is not None:
                dd, lowers = native
                parts = e.path.split("/")
                present = set(os.listdir(os.path.join(dd.path, *parts)))
                for hidden in sorted(merged_names(lowers, parts, dd.opaque_xattr) - present):
                    out.append(Change(ChangeKind.DELETE, f"{e.path}/{hidden}"))
    return sorted(out, key=lambda c: c.path)
