"""The disk spool: messages accepted from local publishers, until the cloud
acknowledges them.

SQLite in WAL mode. With `synchronous=FULL` (the default) a committed batch
is fsynced and survives power loss; the bridge acknowledges a local message
only after the batch holding it committed, so the local broker keeps (and
redelivers) anything the spool does not durably hold. A size cap turns into
back-pressure, never a silent drop. A spool file SQLite cannot read is moved
aside loudly and a fresh one started, so a corrupt file never stops the
gateway.

One thread owns a Spool (sqlite3 connections are bound to their thread).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    droppable INTEGER NOT NULL DEFAULT 0,
    msg_id TEXT NOT NULL,
    enqueued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    reason TEXT NOT NULL,
    at REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Incoming:
    topic: str  # the cloud topic, after mapping
    payload: bytes
    qos: int
    droppable: bool = False  # QoS 0 under a mapping that allows dropping when full


@dataclass(frozen=True, slots=True)
class Stored:
    id: int
    topic: str
    payload: bytes
    qos: int
    msg_id: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    topic: str
    payload: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class SpoolStats:
    depth: int
    bytes: int
    oldest_enqueued_at: float | None
    dead_letters: int
    recovered_from: str | None  # where a corrupt file was moved, if one was


class SpoolFullError(Exception):
    """The batch does not fit under the size cap."""


class DiskFullError(SpoolFullError):
    """The file system holding the spool has no room; nothing was changed."""


class Spool:
    def __init__(self, path: Path, *, max_bytes: int, synchronous: str = "full") -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.recovered_from: str | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(path, synchronous)
        except sqlite3.DatabaseError as exc:
            if not _corrupt(exc):  # a full disk, no permission: not the file's fault
                if isinstance(exc, sqlite3.OperationalError) and _disk_full(exc):
                    raise DiskFullError(f"cannot open the spool {path}: {exc}") from exc
                raise
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            log.error(
                "spool %s is unreadable (%s); moved aside to %s, starting a fresh one",
                path,
                exc,
                aside,
            )
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{path}{suffix}")
                if source.exists():
                    source.rename(Path(f"{aside}{suffix}"))
            self.recovered_from = str(aside)
            self._db = self._open(path, synchronous)
        self._bytes, self._depth = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM messages"
        ).fetchone()
        self._dead = int(self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
        # Message ids: 64 random bits per Spool instance, then a counter, so
        # ids never repeat across restarts without a system call per message.
        self._msg_id_prefix = os.urandom(8).hex()
        self._next_msg_id = 0

    @staticmethod
    def _open(path: Path, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # The spool is read at its head and written at its tail: a small
            # page cache serves that, and SQLite's 2 MiB default only adds RSS.
            db.execute("PRAGMA cache_size=-512")
            db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            db.executescript(_SCHEMA)
            # A quick check catches files damaged beyond what opening notices.
            result = db.execute("PRAGMA quick_check").fetchone()[0]
            if result != "ok":
                raise _FailedCheckError(f"quick_check: {result}")
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        self._db.close()

    # -- writes (each one transaction, durable when it returns) -------------

    @property
    def size_bytes(self) -> int:
        return int(self._bytes)

    @property
    def depth(self) -> int:
        return int(self._depth)

    def fits(self, nbytes: int) -> bool:
        return int(self._bytes) + nbytes <= self.max_bytes

    def append(
        self,
        items: Sequence[Incoming],
        dead: Sequence[DeadLetter] = (),
        delete: Sequence[int] = (),
    ) -> int:
        """Store a batch (and any dead letters) in one durable commit, which
        also forgets the acknowledged ids in `delete` (one fsync for both);
        raise SpoolFullError and change nothing if the batch does not fit.
        Returns how many of `delete` were still here."""
        size = sum(len(i.payload) for i in items)
        now = time.time()
        first = self._next_msg_id
        with self._transaction():
            count, freed = self._delete_rows(delete)
            if items and self._bytes - freed + size > self.max_bytes:
                raise SpoolFullError(f"{size} bytes over the cap of {self.max_bytes}")
            self._db.executemany(
                "INSERT INTO messages (topic, payload, qos, droppable, msg_id, enqueued_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (i.topic, i.payload, i.qos, int(i.droppable), self._msg_id(first + n), now)
                    for n, i in enumerate(items)
                ],
            )
            self._db.executemany(
                "INSERT INTO dead_letters (topic, payload, reason, at) VALUES (?, ?, ?, ?)",
                [(d.topic, d.payload, d.reason, now) for d in dead],
            )
        self._next_msg_id = first + len(items)
        self._bytes += size - freed
        self._depth += len(items) - count
        self._dead += len(dead)
        return count

    def _msg_id(self, n: int) -> str:
        return f"{self._msg_id_prefix}{n:016x}"

    def delete(self, ids: Iterable[int]) -> int:
        """Forget acknowledged messages; returns how many were still here."""
        ids = list(ids)
        if not ids:
            return 0
        with self._transaction():
            count, freed = self._delete_rows(ids)
        self._depth -= count
        self._bytes -= freed
        return count

    def _delete_rows(self, ids: Sequence[int]) -> tuple[int, int]:
        """Delete inside the caller's transaction; (rows, payload bytes) gone."""
        if not ids:
            return 0, 0
        # One statement text whatever the count: an IN list of placeholders
        # would prepare (and cache) a new statement for every length.
        sizes = self._db.execute(
            "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?)) "
            "RETURNING LENGTH(payload)",
            (json.dumps(list(ids)),),
        ).fetchall()
        return len(sizes), sum(size for (size,) in sizes)

    def move_to_dead_letters(self, message_id: int, reason: str) -> None:
        with self._transaction():
            self._db.execute(
                "INSERT INTO dead_letters (topic, payload, reason, at) "
                "SELECT topic, payload, ?, ? FROM messages WHERE id = ?",
                (reason, time.time(), message_id),
            )
        self._dead += 1
        self.delete([message_id])

    def drop_oldest_droppable(self, nbytes: int) -> int:
        """Make room for `nbytes` by dropping the oldest messages their mapping
        declared droppable (QoS 0 telemetry); returns how many went."""
        dropped, freed = 0, 0
        rows = self._db.execute(
            "SELECT id, LENGTH(payload) FROM messages WHERE droppable = 1 ORDER BY id"
        ).fetchall()
        victims = []
        for row_id, size in rows:
            if self.fits(nbytes - freed):
                break
            victims.append(row_id)
            freed += size
            dropped += 1
        self.delete(victims)
        return dropped

    # -- reads ---------------------------------------------------------------

    def after(self, last_id: int, limit: int) -> list[Stored]:
        """The oldest messages with an id above `last_id`, in order."""
        return [
            Stored(*row)
            for row in self._db.execute(
                "SELECT id, topic, payload, qos, msg_id FROM messages WHERE id > ? "
                "ORDER BY id LIMIT ?",
                (last_id, limit),
            )
        ]

    def dead_letters(self, limit: int = 100) -> list[tuple[str, bytes, str]]:
        return [
            (t, p, r)
            for t, p, r in self._db.execute(
                "SELECT topic, payload, reason FROM dead_letters ORDER BY id LIMIT ?", (limit,)
            )
        ]

    def stats(self) -> SpoolStats:
        # Ids grow with time, so the lowest id is the oldest (a key lookup).
        row = self._db.execute("SELECT enqueued_at FROM messages ORDER BY id LIMIT 1").fetchone()
        return SpoolStats(
            depth=self.depth,
            bytes=self.size_bytes,
            oldest_enqueued_at=None if row is None else row[0],
            dead_letters=self._dead,
            recovered_from=self.recovered_from,
        )

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT; on any error ROLLBACK, and a full file
    system (SQLITE_FULL, which is how SQLite reports ENOSPC) becomes
    DiskFullError so the caller can apply back-pressure."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: BaseException | None, _tb: object) -> None:
        if exc is None:
            try:
                self._db.execute("COMMIT")
                return
            except sqlite3.OperationalError as error:
                exc = error
        if self._db.in_transaction:  # SQLite may have rolled back already
            self._db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError) and _disk_full(exc):
            raise DiskFullError(f"the file system holding the spool is full: {exc}") from exc
        if exc_type is None:  # COMMIT failed otherwise: say so
            raise exc


class _FailedCheckError(sqlite3.DatabaseError):
    """PRAGMA quick_check found damage."""


def _corrupt(error: sqlite3.DatabaseError) -> bool:
    """Damage in the file itself, as opposed to trouble around it."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, _FailedCheckError) or code in (
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
    )


def _disk_full(error: sqlite3.OperationalError) -> bool:
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
