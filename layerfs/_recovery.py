"""Finding and repairing what interrupted operations left behind.

Called by ``Store`` on open (``on_open=True``: resolve only what is
certainly abandoned) and by ``Store.check`` (report everything, repair on
request). What counts as abandoned:

- a record in an intent state (creating, committing, removing, applying)
  whose owner process is gone: the create/apply/remove is undone or
  finished by removing the storage, the commit is finished;
- a mount row in a transitional state (mounting, unmounting, temporary)
  whose owner is gone, or a recorded mount that is no longer mounted or
  whose filesystem is dead (a FUSE server killed: ``ENOTCONN``).

A working mount whose owner exited is only *reported* on open-free
checks and taken down by ``check(repair=True)``: a container may still be
running on it, and only the operator can know.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from . import _owner, _records
from ._records import COMMITTING, READY, Record
from ._sys.mount import is_mountpoint

if TYPE_CHECKING:
    from ._store import Store

MOUNTING, MOUNTED, UNMOUNTING, TEMPORARY = "mounting", "mounted", "unmounting", "temporary"


def find_problems(store: Store, repair: bool, on_open: bool) -> list[str]:
    """Describe (and with ``repair`` fix) abandoned intents, mounts and driver leftovers."""
    found: list[str] = []
    with store._meta.transaction(write=False) as db:
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
            resolve_intent(store, rec, by_id)
    for m in mounts:
        if m.state in (MOUNTING, UNMOUNTING, TEMPORARY) and not _owner.is_alive(m.owner):
            found.append(f"mount {m.target}: left {m.state} by a dead process; repair unmounts it")
            if repair:
                store._drop_mount(m)
        elif m.state == MOUNTED and not m.direct and not healthy_mount(m.target):
            found.append(f"mount {m.target}: recorded but gone or broken; repair cleans it up")
            if repair:
                store._drop_mount(m)
        elif m.state == MOUNTED and m.owner is not None and not _owner.is_alive(m.owner):
            if on_open:
                continue
            found.append(
                f"mount {m.target}: its process exited without unmounting; repair unmounts it"
            )
            if repair:
                store._drop_mount(m)
    for rec in records:
        if rec.parent_id is not None and rec.parent_id not in by_id:
            found.append(
                f"snapshot {rec.key!r}: parent id {rec.parent_id} is missing (not repairable)"
            )
    if not on_open:
        # Read the records again: a snapshot created meanwhile by another
        # process must not look like an orphan to the driver.
        known = {r.sid for r in records}
        with store._meta.transaction(write=False) as db:
            known |= {r.sid for r in _records.all_records(db)}
        found.extend(store._driver.check(known, repair))
    return found


def resolve_intent(store: Store, rec: Record, by_id: dict[int, Record]) -> None:
    """Finish an interrupted commit, or undo any other interrupted operation."""
    if rec.state == COMMITTING:
        store._driver.commit(store._ref_from(rec, by_id))
        with store._meta.transaction() as db:
            _records.set_state(db, rec.id, READY, None)
        return
    for m in store._mount_rows(rec.id):
        store._drop_mount(m)
    store._driver.remove(rec.sid)
    with store._meta.transaction() as db:
        _records.delete(db, rec.id)


def healthy_mount(target: str) -> bool:
    """True when ``target`` is a mount point whose filesystem still answers."""
    try:
        os.stat(target)
    except OSError as exc:
        if exc.errno in (errno.ENOTCONN, errno.EIO, errno.ENOENT):
            return False
        raise
    return is_mountpoint(target)
