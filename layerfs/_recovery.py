"""Finding and repairing what interrupted operations left behind.

Called by ``Store`` on open (``on_open=True``: resolve only what is
certainly abandoned) and by ``Store.check`` (report everything, repair on
request). Several processes may run this at once, and others keep working
meanwhile, so repair touches only what is provably dead, and claims each
thing in a transaction before acting on it (a second checker then leaves
it alone):

- a record in an intent state (creating, committing, removing, applying)
  whose owner process is gone: the create/apply/remove is undone or
  finished by removing the storage, the commit is finished;
- a mount row in a transitional state (mounting, unmounting, temporary)
  whose owners are gone, or a recorded mount that is no longer mounted or
  whose filesystem is dead (a FUSE server killed: ``ENOTCONN``);
- driver storage that no record names, looked for while holding the
  storage lock exclusively (see ``layerfs._locks``), so no create or
  removal is half-way.

A working mount whose owners exited is only *reported* on open-free
checks and taken down by ``check(repair=True)``: a container may still be
running on it, and only the operator can know. A mount that does not
answer within a few seconds (a stopped or wedged FUSE server) is reported
and left alone: stat-ing it would hang, and it is not provably dead.
"""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable

from . import _owner, _records
from ._context import StoreContext
from ._records import COMMITTING, MOUNTING, READY, TEMPORARY, UNMOUNTING, Record
from ._sys.mount import is_mountpoint

#: Seconds a mount point may take to answer a stat before it counts as hung.
HUNG_AFTER_S = 2.0


def find_problems(ctx: StoreContext, repair: bool, on_open: bool) -> list[str]:
    """Describe (and with ``repair`` fix) abandoned intents, mounts and driver leftovers."""
    found: list[str] = []
    with ctx.meta.transaction(write=False) as db:
        records = _records.all_records(db)
        mounts = _records.mount_rows(db)
    by_id = {r.id: r for r in records}
    for rec in records:
        if rec.state == READY or _owner.is_alive(rec.owner):
            continue
        action = "finish the commit" if rec.state == COMMITTING else "remove its storage"
        found.append(
            f"snapshot {rec.key!r} (id {rec.id}): interrupted {rec.state}; repair will {action}"
        )
        if repair:
            resolve_intent(ctx, rec, by_id)
    for m in mounts:
        found += _check_mount(ctx, m, repair, on_open)
    for rec in records:
        if rec.parent_id is not None and rec.parent_id not in by_id:
            found.append(
                f"snapshot {rec.key!r}: parent id {rec.parent_id} is missing (not repairable)"
            )
    if not on_open:
        with ctx.storage_lock(exclusive=True):
            # No create or removal is half-way now: storage of an id the
            # database does not name is a leftover.
            with ctx.meta.transaction(write=False) as db:
                known = {r.sid for r in _records.all_records(db)}
            found.extend(ctx.driver.check(known, repair))
    return found


def _check_mount(
    ctx: StoreContext, m: _records.MountRecord, repair: bool, on_open: bool
) -> list[str]:
    if m.state in (MOUNTING, UNMOUNTING, TEMPORARY):
        if _owner.any_alive(m.owner):
            return []
        problem = f"mount {m.target}: left {m.state} by a dead process; repair unmounts it"
        if repair:
            _take_down(ctx, m, lambda: True)
        return [problem]
    if m.direct:
        dead_owners = m.owner is not None and not _owner.any_alive(m.owner)
        if not dead_owners or on_open:
            return []
        if repair:
            _take_down(ctx, m, lambda: not _owner.any_alive(m.owner))
        return [f"mount {m.target}: its process exited without unmounting; repair drops it"]
    state = mount_state(m.target)
    if state == "gone" and not _unchanged_and_gone(ctx, m):
        return []  # unmounted (or remounted) by its owner meanwhile
    if state == "hung":
        return [
            f"mount {m.target}: does not answer within {HUNG_AFTER_S:g}s (a stopped or wedged "
            "FUSE server?); left alone: resume or kill its server, then run check(repair=True)"
        ]
    if state == "gone":
        if repair:
            _take_down(ctx, m, lambda: mount_state(m.target) == "gone")
        return [f"mount {m.target}: recorded but gone or broken; repair cleans it up"]
    if m.owner is not None and not _owner.any_alive(m.owner) and not on_open:
        if repair:
            _take_down(ctx, m, lambda: not _owner.any_alive(m.owner))
        return [f"mount {m.target}: its process exited without unmounting; repair unmounts it"]
    return []


def _unchanged_and_gone(ctx: StoreContext, seen: _records.MountRecord) -> bool:
    """True when the row still reads ``seen`` and its mount is still gone."""
    with ctx.meta.transaction(write=False) as db:
        if _records.mount_row(db, seen.target) != seen:
            return False
    return mount_state(seen.target) == "gone"


def _take_down(
    ctx: StoreContext, seen: _records.MountRecord, still_dead: Callable[[], bool]
) -> None:
    """Claim the row ``seen`` (unchanged since read), re-check, and unmount it."""
    claimed = ctx.claim_mount(seen)
    if claimed is None:
        return  # another process changed or took it
    if not still_dead():
        ctx.release_claim(claimed, seen)
        return
    ctx.drop_mount(claimed)


def resolve_intent(ctx: StoreContext, rec: Record, by_id: dict[int, Record]) -> None:
    """Finish an interrupted commit, or undo any other interrupted operation.

    The intent is claimed first (its owner set to this process, in a
    transaction that checks nobody else claimed it), so two processes
    recovering at once do not both act on it.
    """
    me = _owner.current()
    with ctx.meta.transaction() as db:
        now = _records.by_id(db, rec.id)
        if now is None or now.state != rec.state or now.owner != rec.owner:
            return
        _records.set_state(db, rec.id, rec.state, me)
    if rec.state == COMMITTING:
        ref = ctx.ref(rec, by_id)
        ctx.driver.commit(ref)
        ctx.make_durable(ref)
        with ctx.meta.transaction() as db:
            _records.set_state(db, rec.id, READY, None)
        return
    for m in ctx.mount_rows(rec.id):
        claimed = ctx.claim_mount(m)
        if claimed is not None:
            ctx.drop_mount(claimed)
    with ctx.storage_lock():
        ctx.driver.remove(rec.sid)
        with ctx.meta.transaction() as db:
            _records.delete(db, rec.id)


def mount_state(target: str, timeout: float = HUNG_AFTER_S) -> str:
    """``"ok"``, ``"gone"`` (not mounted, or its filesystem is dead) or ``"hung"``.

    The stat runs in a daemon thread: on a stopped FUSE server it would
    block for as long as the server does.
    """
    result: list[str] = []

    def probe() -> None:
        try:
            os.stat(target)
        except OSError as exc:
            if exc.errno in (errno.ENOTCONN, errno.EIO, errno.ENOENT):
                result.append("gone")
                return
            result.append("ok")
            return
        result.append("ok" if is_mountpoint(target) else "gone")

    t = threading.Thread(target=probe, name="layerfs-mount-probe", daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else "hung"
