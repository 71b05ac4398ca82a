"""The disk spool: messages accepted from local publishers, until the cloud
acknowledges them.

SQLite in WAL mode. With `synchronous=FULL` (the default) a committed batch
is fsynced and survives power loss; the bridge acknowledges a local message
only after the batch holding it committed, so the local broker keeps (and
redelivers) anything the spool does not durably hold. A size cap turns into
back-pressure, never a silent drop. A spool file SQLite cannot read is moved
aside loudly and a fresh one started, so a corrupt file never stops the
gateway.

A full disk must not wedge the spool: deleting acknowledged rows needs room
too (SQLite writes the delete to the WAL, then checkpoints it into the main
file). So the WAL is checkpointed every `_CHECKPOINT_PAGES` and kept small,
and a reserve file of `RESERVE_BYTES` sits beside the spool; when a delete
meets a full disk, the reserve is given up, the WAL checkpointed and
truncated, the delete done in small transactions, and the reserve taken
again once there is room. The spool holds every payload, so its files are the agent's alone
(mode 0600; SQLite gives the -wal and -shm files the main file's mode).

One thread owns a Spool (sqlite3 connections are bound to their thread).
"""

from __future__ import annotations

import contextlib
import errno
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


# Room kept beside the spool for deletes and checkpoints on a full disk: it
# covers a checkpoint of a WAL at its limit plus a small delete.
RESERVE_BYTES = 1024 * 1024
_CHECKPOINT_PAGES = 128  # at the default 4 KiB page: a WAL of about 512 KiB
_DELETE_CHUNK = 64  # rows per transaction while deleting on a full disk


class SpoolFullError(Exception):
    """The batch does not fit under the size cap."""


class DiskFullError(SpoolFullError):
    """The file system holding the spool has no room; nothing was changed."""


class Spool:
    def __init__(self, path: Path, *, max_bytes: int, synchronous: str = "full") -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.recovered_from: str | None = None
        self._reserve = Path(f"{path}-reserve")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            _private(path)
            self._db = self._open(path, synchronous)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFullError(f"cannot create the spool {path}: {exc.strerror}") from exc
            raise
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
            _private(path)
            self._db = self._open(path, synchronous)
        self._bytes, self._depth = self._db.execute(
            "SELECT COALESCE(SUM(LENGTH(payload)), 0), COUNT(*) FROM messages"
        ).fetchone()
        self._dead = int(self._db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0])
        # Message ids: 64 random bits per Spool instance, then a counter, so
        # ids never repeat across restarts without a system call per message.
        self._msg_id_prefix = os.urandom(8).hex()
        self._next_msg_id = 0
        self._reserved = self._take_reserve()

    @staticmethod
    def _open(path: Path, synchronous: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # The spool is read at its head and written at its tail: a small
            # page cache serves that, and SQLite's 2 MiB default only adds RSS.
            db.execute("PRAGMA cache_size=-512")
            db.execute(f"PRAGMA synchronous={'FULL' if synchronous == 'full' else 'NORMAL'}")
            # A small WAL, truncated back after checkpoints, so the data
            # lives in the main file and a full disk leaves little to move.
            db.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
            db.execute(f"PRAGMA journal_size_limit={RESERVE_BYTES // 2}")
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
        try:
            return self._append(items, dead, delete)
        except DiskFullError:
            # The rolled-back batch may have grown the WAL file to the end
            # of the disk: give that room back.
            self._checkpoint()
            raise

    def _append(
        self, items: Sequence[Incoming], dead: Sequence[DeadLetter], delete: Sequence[int]
    ) -> int:
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
        """Forget acknowledged messages; returns how many were still here.
        On a full disk the reserve makes room for it (DiskFullError only if
        even that is not enough)."""
        ids = list(ids)
        if not ids:
            return 0
        try:
            count = self._delete_committed(ids)
        except DiskFullError:
            if not self._give_up_reserve():
                raise
            log.warning("disk full: using the spool's reserve to delete acknowledged messages")
            self._checkpoint()
            count = 0
            for start in range(0, len(ids), _DELETE_CHUNK):
                count += self._delete_committed(ids[start : start + _DELETE_CHUNK])
                self._checkpoint()
        if not self._reserved:
            self._checkpoint()
            self._reserved = self._take_reserve()
        return count

    def _delete_committed(self, ids: Sequence[int]) -> int:
        with self._transaction():
            count, freed = self._delete_rows(ids)
        self._depth -= count
        self._bytes -= freed
        return count

    def _checkpoint(self) -> None:
        """Move the WAL into the main file and truncate it (best effort: on
        a full disk it may not finish, and the next one goes on)."""
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.OperationalError as exc:
            if not _disk_full(exc):
                raise

    def _take_reserve(self) -> bool:
        """Set aside RESERVE_BYTES on the spool's file system, if there is room."""
        try:
            fd = os.open(self._reserve, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            os.posix_fallocate(fd, 0, RESERVE_BYTES)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                self._reserve.unlink()
            return False
        os.close(fd)
        return True

    def _give_up_reserve(self) -> bool:
        if not self._reserved:
            return False
        self._reserved = False
        try:
            self._reserve.unlink()
        except OSError:
            return False
        return True

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


def _private(path: Path) -> None:
    """Create the spool file 0600 before SQLite does (it would use 0644 and
    the umask), and take back read access others were given."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            side = Path(f"{path}{suffix}")
            if side.stat().st_mode & 0o077:
                side.chmod(0o600)


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
