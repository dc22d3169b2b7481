"""The store's SQLite database: connection, schema and transactions.

One database per store root, in WAL mode so readers never block the
writer, with a busy timeout so several processes can share a root. Every
write runs in ``BEGIN IMMEDIATE`` (the write lock is taken up front, so two
writers never both read-then-fail to upgrade); every store operation is
one transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import errors

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- One key space for all kinds: an active snapshot's key becomes its name
-- on commit. AUTOINCREMENT: ids are storage names and are never reused.
CREATE TABLE IF NOT EXISTS snapshots (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    key       TEXT NOT NULL UNIQUE,
    kind      TEXT NOT NULL,
    parent_id INTEGER REFERENCES snapshots(id),
    labels    TEXT NOT NULL DEFAULT '{}',
    created   REAL NOT NULL,
    updated   REAL NOT NULL,
    -- ready, or an intent: creating, committing, removing, applying
    state     TEXT NOT NULL,
    owner     TEXT,
    size      INTEGER,
    inodes    INTEGER
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
CREATE TABLE IF NOT EXISTS mounts (
    target      TEXT PRIMARY KEY,
    snapshot_id INTEGER NOT NULL REFERENCES snapshots(id),
    refs        INTEGER NOT NULL,
    -- mounting, mounted, unmounting
    state       TEXT NOT NULL,
    owner       TEXT,
    direct      INTEGER NOT NULL DEFAULT 0
);
-- The OCI identity of a committed snapshot's changes: its diff ID (digest
-- of its uncompressed layer tar) and its chain ID. Written by apply, or
-- when an apply on a snapshot committed by a user first needs them.
CREATE TABLE IF NOT EXISTS layer_ids (
    snapshot_id INTEGER PRIMARY KEY REFERENCES snapshots(id) ON DELETE CASCADE,
    diff_id     TEXT NOT NULL,
    chain_id    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS driver_state (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

BUSY_TIMEOUT_S = 30.0


class Metadata:
    """The database of one store. Thread-safe: one connection behind a lock.

    Args:
        path: the database file (created with the schema when missing).

    Raises:
        errors.Corrupt: the file is not a layerfs database.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._db = sqlite3.connect(
                str(path),
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self.transaction():
                # executescript() would commit the open transaction: run one by one.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                if self.get_meta("schema") is None:
                    self.set_meta("schema", SCHEMA_VERSION)
        except sqlite3.DatabaseError as exc:
            raise errors.Corrupt(f"store database {path} cannot be opened: {exc}") from exc
        version = self.get_meta("schema")
        if version != SCHEMA_VERSION:
            raise errors.Unsupported(
                f"store database {path} has schema {version}; this layerfs reads {SCHEMA_VERSION}"
            )

    @contextmanager
    def transaction(self, write: bool = True) -> Iterator[sqlite3.Connection]:
        """Run the block in one transaction; nested blocks join the outer one.

        A write transaction starts with ``BEGIN IMMEDIATE``. An exception
        rolls everything back.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._db
                finally:
                    self._depth -= 1
                return
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            except sqlite3.OperationalError as exc:
                raise errors.Busy(f"store database {self.path} is locked: {exc}") from exc
            self._depth = 1
            try:
                yield self._db
            except BaseException as exc:
                self._depth = 0
                self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _is_lock_error(exc):
                    raise errors.Busy(f"store database {self.path} is locked: {exc}") from exc
                raise
            else:
                self._depth = 0
                try:
                    self._db.execute("COMMIT")
                except sqlite3.OperationalError as exc:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    if _is_lock_error(exc):
                        raise errors.Busy(f"store database {self.path} is locked: {exc}") from exc
                    raise

    def set_durable(self, durable: bool) -> None:
        """``synchronous=FULL`` (each commit is on disk when it returns) or ``NORMAL``.

        In WAL mode ``NORMAL`` keeps the database consistent through a power
        loss but may lose the last transactions; ``FULL`` adds one fsync of
        the WAL per transaction.
        """
        with self._lock:
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")

    def get_meta(self, name: str) -> str | None:
        """Read one store-wide setting."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, name: str, value: str) -> None:
        """Write one store-wide setting."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(name, value) VALUES (?, ?)", (name, value))

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            try:
                self._db.close()
            except sqlite3.Error:
                pass


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "locked" in text or "busy" in text


class DriverStateTable:
    """``layerfs.driver.DriverState`` kept in the store's database (table ``driver_state``)."""

    def __init__(self, metadata: Metadata) -> None:
        self._meta = metadata

    def get(self, name: str) -> str | None:
        """Return the value stored under ``name``, or None."""
        with self._meta.transaction(write=False) as db:
            row = db.execute("SELECT value FROM driver_state WHERE name=?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def put(self, name: str, value: str) -> None:
        """Store ``value`` under ``name``."""
        with self._meta.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO driver_state(name, value) VALUES (?, ?)", (name, value)
            )

    def delete(self, name: str) -> None:
        """Remove ``name``; missing is fine."""
        with self._meta.transaction() as db:
            db.execute("DELETE FROM driver_state WHERE name=?", (name,))

    def items(self, prefix: str = "") -> Iterator[tuple[str, str]]:
        """Yield ``(name, value)`` pairs whose name starts with ``prefix``, sorted."""
        with self._meta.transaction(write=False) as db:
            rows = db.execute(
                "SELECT name, value FROM driver_state WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(prefix), prefix),
            ).fetchall()
        yield from ((str(a), str(b)) for a, b in rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several puts and deletes into one atomic write."""
        with self._meta.transaction():
            yield
