"""Snapshot records: plain functions over an open transaction.

The store calls these inside ``Metadata.transaction()``; each function does
one thing to the ``snapshots`` or ``mounts`` table and checks its own
preconditions, raising ``layerfs.errors`` with the key in the message.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from datetime import UTC, datetime

from . import errors
from ._types import Info, Kind

READY = "ready"
CREATING = "creating"
COMMITTING = "committing"
REMOVING = "removing"
APPLYING = "applying"


@dataclasses.dataclass(frozen=True)
class Record:
    """One row of ``snapshots``."""

    id: int
    key: str
    kind: Kind
    parent_id: int | None
    labels: dict[str, str]
    created: float
    updated: float
    state: str
    owner: str | None
    size: int | None
    inodes: int | None

    @property
    def sid(self) -> str:
        """The storage id as drivers see it."""
        return str(self.id)


_COLUMNS = "id, key, kind, parent_id, labels, created, updated, state, owner, size, inodes"


def _record(row: tuple) -> Record:  # type: ignore[type-arg]
    return Record(
        id=row[0],
        key=row[1],
        kind=Kind(row[2]),
        parent_id=row[3],
        labels=json.loads(row[4]),
        created=row[5],
        updated=row[6],
        state=row[7],
        owner=row[8],
        size=row[9],
        inodes=row[10],
    )


def _time(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def find(db: sqlite3.Connection, key: str) -> Record | None:
    """The record with this key or name, in any state, or None."""
    row = db.execute(f"SELECT {_COLUMNS} FROM snapshots WHERE key=?", (key,)).fetchone()
    return None if row is None else _record(row)


def by_id(db: sqlite3.Connection, sid: int) -> Record | None:
    """The record with this id, or None."""
    row = db.execute(f"SELECT {_COLUMNS} FROM snapshots WHERE id=?", (sid,)).fetchone()
    return None if row is None else _record(row)


def get(db: sqlite3.Connection, key: str) -> Record:
    """The ready record with this key or name.

    Raises:
        errors.NotFound: no such snapshot (or it is being created or removed).
    """
    rec = find(db, key)
    if rec is None or rec.state != READY:
        raise errors.NotFound(f"snapshot {key!r} does not exist; list snapshots with walk()")
    return rec


def all_records(db: sqlite3.Connection) -> list[Record]:
    """Every record, in id order."""
    return [_record(r) for r in db.execute(f"SELECT {_COLUMNS} FROM snapshots ORDER BY id")]


def ancestors(db: sqlite3.Connection, rec: Record) -> list[Record]:
    """The parent chain of ``rec``, nearest first (one recursive query)."""
    if rec.parent_id is None:
        return []
    rows = db.execute(
        f"""WITH RECURSIVE chain(id, depth) AS (
                SELECT ?, 0
                UNION ALL
                SELECT s.parent_id, chain.depth + 1 FROM snapshots s JOIN chain ON s.id = chain.id
                WHERE s.parent_id IS NOT NULL
            )
            SELECT {", ".join("s." + c.strip() for c in _COLUMNS.split(","))}
            FROM chain JOIN snapshots s ON s.id = chain.id ORDER BY chain.depth""",
        (rec.parent_id,),
    ).fetchall()
    chain = [_record(r) for r in rows]
    if not chain or (chain[-1].parent_id is not None):
        raise errors.Corrupt(f"snapshot {rec.key!r} has a missing ancestor; run check()")
    return chain


def has_children(db: sqlite3.Connection, sid: int) -> bool:
    """True when any record, in any state, names ``sid`` as its parent."""
    return (
        db.execute("SELECT 1 FROM snapshots WHERE parent_id=? LIMIT 1", (sid,)).fetchone()
        is not None
    )


def insert(
    db: sqlite3.Connection,
    key: str,
    kind: Kind,
    parent: Record | None,
    labels: dict[str, str],
    state: str,
    owner: str | None,
) -> Record:
    """Add a record.

    Raises:
        errors.AlreadyExists: the key is taken.
    """
    if find(db, key) is not None:
        raise errors.AlreadyExists(f"snapshot {key!r} already exists; remove it or use another key")
    now = time.time()
    cur = db.execute(
        "INSERT INTO snapshots(key, kind, parent_id, labels, created, updated, state, owner)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            kind.value,
            parent.id if parent else None,
            json.dumps(labels),
            now,
            now,
            state,
            owner,
        ),
    )
    rec = by_id(db, int(cur.lastrowid or 0))
    assert rec is not None
    return rec


def set_state(db: sqlite3.Connection, sid: int, state: str, owner: str | None) -> None:
    """Move a record to ``state`` (an intent, or READY) owned by ``owner``."""
    db.execute("UPDATE snapshots SET state=?, owner=? WHERE id=?", (state, owner, sid))


def mark_committed(
    db: sqlite3.Connection,
    sid: int,
    name: str,
    labels: dict[str, str],
    state: str,
    owner: str | None,
) -> None:
    """Turn an active record into a committed one called ``name``."""
    db.execute(
        "UPDATE snapshots SET key=?, kind=?, labels=?, updated=?, state=?, owner=? WHERE id=?",
        (name, Kind.COMMITTED.value, json.dumps(labels), time.time(), state, owner, sid),
    )


def revert_commit(db: sqlite3.Connection, sid: int, key: str, labels: dict[str, str]) -> None:
    """Undo ``mark_committed`` when the driver could not freeze the snapshot."""
    db.execute(
        "UPDATE snapshots SET key=?, kind=?, labels=?, state=?, owner=NULL WHERE id=?",
        (key, Kind.ACTIVE.value, json.dumps(labels), READY, sid),
    )


def set_usage(db: sqlite3.Connection, sid: int, size: int, inodes: int) -> None:
    """Cache the usage of a committed snapshot (it never changes)."""
    db.execute("UPDATE snapshots SET size=?, inodes=? WHERE id=?", (size, inodes, sid))


def set_labels(db: sqlite3.Connection, sid: int, labels: dict[str, str]) -> float:
    """Replace a record's labels; returns the new update time."""
    now = time.time()
    db.execute(
        "UPDATE snapshots SET labels=?, updated=? WHERE id=?", (json.dumps(labels), now, sid)
    )
    return now


def delete(db: sqlite3.Connection, sid: int) -> None:
    """Drop a record (and its mount rows and layer IDs)."""
    db.execute("DELETE FROM mounts WHERE snapshot_id=?", (sid,))
    db.execute("DELETE FROM layer_ids WHERE snapshot_id=?", (sid,))
    db.execute("DELETE FROM snapshots WHERE id=?", (sid,))


def layer_ids(db: sqlite3.Connection, sid: int) -> tuple[str, str] | None:
    """The recorded ``(diff_id, chain_id)`` of a committed snapshot, or None."""
    row = db.execute(
        "SELECT diff_id, chain_id FROM layer_ids WHERE snapshot_id=?", (sid,)
    ).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def put_layer_ids(db: sqlite3.Connection, sid: int, diff_id: str, chain_id: str) -> None:
    """Record the diff ID and chain ID of a committed snapshot."""
    db.execute(
        "INSERT OR REPLACE INTO layer_ids(snapshot_id, diff_id, chain_id) VALUES (?, ?, ?)",
        (sid, diff_id, chain_id),
    )


def info(db: sqlite3.Connection, rec: Record) -> Info:
    """The public ``Info`` of a record."""
    parent_name = None
    if rec.parent_id is not None:
        parent = by_id(db, rec.parent_id)
        parent_name = parent.key if parent else None
    return Info(
        name=rec.key,
        parent=parent_name,
        kind=rec.kind,
        labels=rec.labels,
        created=_time(rec.created),
        updated=_time(rec.updated),
    )


def infos(db: sqlite3.Connection) -> list[Info]:
    """The ``Info`` of every ready record, in key order, in one query."""
    rows = db.execute(
        "SELECT s.key, p.key, s.kind, s.labels, s.created, s.updated FROM snapshots s"
        " LEFT JOIN snapshots p ON p.id = s.parent_id WHERE s.state=? ORDER BY s.key",
        (READY,),
    ).fetchall()
    return [
        Info(
            name=r[0],
            parent=r[1],
            kind=Kind(r[2]),
            labels=json.loads(r[3]),
            created=_time(r[4]),
            updated=_time(r[5]),
        )
        for r in rows
    ]


# -- mounts -------------------------------------------------------------------

#: States of a mount row: being mounted, mounted, being unmounted, and a
#: mount the store made for itself for one operation (``apply``, ``export``).
MOUNTING, MOUNTED, UNMOUNTING, TEMPORARY = "mounting", "mounted", "unmounting", "temporary"


@dataclasses.dataclass(frozen=True)
class MountRecord:
    """One row of ``mounts``: a target and how many callers hold it."""

    target: str
    snapshot_id: int
    refs: int
    state: str
    owner: str | None
    direct: bool


def mount_rows(db: sqlite3.Connection, sid: int | None = None) -> list[MountRecord]:
    """Mount rows, all or those of one snapshot."""
    sql = "SELECT target, snapshot_id, refs, state, owner, direct FROM mounts"
    rows = db.execute(
        sql + (" WHERE snapshot_id=?" if sid is not None else ""), (() if sid is None else (sid,))
    ).fetchall()
    return [MountRecord(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


def mount_row(db: sqlite3.Connection, target: str) -> MountRecord | None:
    """The mount row for ``target``, or None."""
    row = db.execute(
        "SELECT target, snapshot_id, refs, state, owner, direct FROM mounts WHERE target=?",
        (target,),
    ).fetchone()
    return (
        None if row is None else MountRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]))
    )


def put_mount(db: sqlite3.Connection, m: MountRecord) -> None:
    """Insert or replace a mount row."""
    db.execute(
        "INSERT OR REPLACE INTO mounts(target, snapshot_id, refs, state, owner, direct)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (m.target, m.snapshot_id, m.refs, m.state, m.owner, int(m.direct)),
    )


def delete_mount(db: sqlite3.Connection, target: str) -> None:
    """Drop a mount row."""
    db.execute("DELETE FROM mounts WHERE target=?", (target,))
