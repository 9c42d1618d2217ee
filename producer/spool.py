"""The spool: the producer's durable local outbox (SQLite, WAL) fed by a journal.

``append`` (hot path) writes to this process's journal (see ``metatrail.producer.journal``). While
deliveries succeed, the relay sends journal frames straight to the transport and only
records how far the journal is delivered (``read_journal`` / ``journal_delivered``); when a
delivery fails, or older rows wait, it moves frames into the ``spool`` table (``ingest``,
one transaction) and delivers from there (``read_batch`` / ``delete``), so an outage never
leaves more than one batch outside the table. Rows are deleted once delivered. Several
processes may share one spool file (forked workers, ``metatrail flush``); each one has
its own journal, and dead processes' journals are recovered by ``recover_orphans``.
Each row belongs to the process that moved it into the table (``owner`` = its pid), and
only the owner's relay sends it, so two live processes never send the same event; rows of
processes that are gone are adopted by the next relay (or ``metatrail flush``).

Size bound (``spool_max_bytes``, counting live SQLite pages plus un-ingested journal):
``warn`` keeps recording and warns at most once a minute; ``drop_oldest`` deletes the
oldest undelivered events and logs how many (running total in ``stats()``); ``raise``
refuses new events with ``SpoolFullError`` (logged, or raised in strict mode).

Nothing is lost silently: a journal write the disk refuses raises ``JournalWriteError``
(reported by the recorder) and is counted in ``lost``; journal bytes that no longer decode
are moved to ``spool.corrupt`` with a warning and counted in ``damaged``; a journal is
deleted only once everything in it is in the table or set aside. The spool's files are
created 0600 in a 0700 folder (``metatrail.schemas.files``).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from metatrail.producer import journal, setaside
from metatrail.schemas.files import private_file
from metatrail.producer.forkguard import spool_guard
from metatrail.producer.transports.base import SpooledEvent
from metatrail.schemas.errors import TransportError

log = logging.getLogger("metatrail.producer")

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    key TEXT NOT NULL,
    payload BLOB NOT NULL,
    spooled_at REAL NOT NULL,
    owner INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS spool_owner_seq ON spool (owner, seq);
CREATE TABLE IF NOT EXISTS journal_offsets (file TEXT PRIMARY KEY, offset INTEGER NOT NULL);
DROP TABLE IF EXISTS digest_cache;
CREATE TABLE IF NOT EXISTS file_digests (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL, digest TEXT NOT NULL, hashed_at_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS spool_stats (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
WARN_INTERVAL_S = 60.0
_ABANDONED: list[object] = []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SpoolFullError(TransportError):
    """The spool is over ``spool_max_bytes`` and the policy is ``raise``."""


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back on error. SQLite has already rolled
    back after some errors (disk full, I/O error): then the ROLLBACK's own error ("no
    transaction is active") is dropped, so the caller sees the cause."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error as exc:
                log.debug("metatrail: spool rollback failed: %s", exc)
        raise


class Spool:
    """One spool file. Thread-safe; every thread uses its own SQLite connection. Every
    method that uses SQLite holds ``spool_guard``: a fork never lands inside one (see
    ``metatrail.producer.forkguard``); ``append``, the hot path, uses no SQLite and no such lock."""

    def __init__(self, path: Path, *, max_bytes: int = 1 << 30, full_policy: str = "warn") -> None:
        self.path = Path(path).absolute()
        self.journal_dir = self.path.with_name(self.path.name + ".journal")
        self.max_bytes = max_bytes
        self.full_policy = full_policy
        self.writer = journal.JournalWriter(self.journal_dir)
        self._local = threading.local()
        self._ingested = 0  # how far this process's current journal file is in the table
        self._ingest_lock = threading.Lock()
        self._over = False
        self._last_warn = 0.0
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        #: Events refused by a failing journal write (not recorded), and the last reason.
        self.lost = 0
        self.lost_reason = ""
        #: Damaged journal regions moved to ``spool.corrupt``, and their bytes.
        self.damaged = 0
        self.damaged_bytes = 0

    # --- connections --------------------------------------------------------------------
    @spool_guard
    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            private_file(self.path)  # 0600: SQLite gives its -wal and -shm the same mode
            conn = sqlite3.connect(
                self.path, isolation_level=None, timeout=30, check_same_thread=False
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(SCHEMA)
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @spool_guard
    def close(self) -> None:
        """Close the journal (removed if fully ingested, else recovered later by whoever
        opens this spool next) and the connections."""
        path = self.writer.path
        fully = path is not None and self._ingested >= self.writer.offset
        self.writer.close()
        if fully and path is not None:
            try:
                os.unlink(path)
                self.conn().execute("DELETE FROM journal_offsets WHERE file = ?", (str(path),))
            except (OSError, sqlite3.Error):
                pass
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()

    # --- hot path -----------------------------------------------------------------------
    def append(self, records: list[journal.Record]) -> None:
        """Make ``records`` durable (one journal write). Applies the full-spool policy."""
        if self._over:
            self._full()
        try:
            self.writer.append(records)
        except journal.JournalWriteError as exc:
            self.lost += len(records)
            self.lost_reason = str(exc)
            raise
        if self.writer.offset - self._ingested > self.max_bytes:
            self._over = True

    @spool_guard
    def append_direct(self, records: list[journal.Record]) -> None:
        """Insert straight into the table, one commit (the slower path, for comparison)."""
        now, pid = time.time(), os.getpid()
        self.conn().executemany(
            "INSERT INTO spool (event_id, key, payload, spooled_at, owner) VALUES (?, ?, ?, ?, ?)",
            [(e, k, p, now, pid) for e, k, p in records],
        )

    def _full(self) -> None:
        if self.full_policy == "raise":
            raise SpoolFullError(
                f"spool {self.path} is over METATRAIL_SPOOL_MAX_BYTES={self.max_bytes}; event refused"
            )
        now = time.monotonic()
        if self.full_policy == "warn" and now - self._last_warn > WARN_INTERVAL_S:
            self._last_warn = now
            log.warning(
                "metatrail: spool %s is over METATRAIL_SPOOL_MAX_BYTES=%d (events are not being "
                "delivered); still recording (policy 'warn')",
                self.path,
                self.max_bytes,
            )

    # --- relay side ---------------------------------------------------------------------
    def pending_journal_bytes(self) -> int:
        return self.writer.offset - self._ingested

    @spool_guard
    def ingest(self) -> int:
        """Move this process's new journal frames into the table; returns how many."""
        with self._ingest_lock:
            path, end = self.writer.path, self.writer.offset
            if path is None or end <= self._ingested:
                return 0
            records, offset, _torn, damaged = journal.read_from(path, self._ingested, end=end)
            if damaged:
                self._set_damage_aside(path, damaged)
            self._insert(records, str(path), offset)
            self._ingested = offset
            if self.writer.rotate_if_done(offset) is not None:
                self._ingested = 0
                self.conn().execute("DELETE FROM journal_offsets WHERE file = ?", (str(path),))
            return len(records)

    def read_journal(self, limit: int) -> tuple[list[SpooledEvent], int] | None:
        """Up to ``limit`` of this process's journal frames not yet handled, and the offset
        after them (for the direct path: send, then ``journal_delivered`` or ``ingest``).
        ``None`` when damage lies among them: the caller must ``ingest`` instead (which
        sets the damage aside)."""
        with self._ingest_lock:
            path, end = self.writer.path, self.writer.offset
            if path is None or end <= self._ingested:
                return [], self._ingested
            records, offset, _torn, damaged = journal.read_from(path, self._ingested, limit, end)
        if damaged:
            return None
        return [SpooledEvent(0, e, k, p) for e, k, p in records], offset

    @spool_guard
    def journal_delivered(self, offset: int) -> None:
        """The journal up to ``offset`` was delivered without passing through the table."""
        with self._ingest_lock:
            path = self.writer.path
            if path is None or offset <= self._ingested:
                return
            self.conn().execute(
                "INSERT INTO journal_offsets (file, offset) VALUES (?, ?) "
                "ON CONFLICT(file) DO UPDATE SET offset = excluded.offset",
                (str(path), offset),
            )
            self._ingested = offset
            if self.writer.rotate_if_done(offset) is not None:
                self._ingested = 0
                self.conn().execute("DELETE FROM journal_offsets WHERE file = ?", (str(path),))

    @spool_guard
    def own_rows(self) -> bool:
        """Whether the table holds undelivered rows of this process."""
        return (
            self.conn()
            .execute("SELECT 1 FROM spool WHERE owner = ? LIMIT 1", (os.getpid(),))
            .fetchone()
            is not None
        )

    @spool_guard
    def recover_orphans(self) -> int:
        """Move journals of processes that are gone into the table; returns how many events."""
        total = 0
        conn = self.conn()
        for path, fd in journal.orphans(self.journal_dir, self.writer.path):
            try:
                row = conn.execute(
                    "SELECT offset FROM journal_offsets WHERE file = ?", (str(path),)
                ).fetchone()
                try:
                    records, offset, _torn, damaged = journal.read_from(
                        path, row[0] if row else 0, final=True
                    )
                except OSError as exc:  # kept: it is deleted only once fully read
                    log.error("metatrail: cannot read the journal %s (kept): %s", path, exc)
                    continue
                if damaged:
                    self._set_damage_aside(path, damaged)
                self._insert(records, str(path), offset)
                os.unlink(path)
                conn.execute("DELETE FROM journal_offsets WHERE file = ?", (str(path),))
                total += len(records)
            finally:
                os.close(fd)
        return total + self.adopt_orphans()

    def _set_damage_aside(self, path: Path, damaged: list[tuple[int, bytes]]) -> None:
        """Move undecodable journal bytes to ``spool.corrupt`` (with a warning). Raises
        ``OSError`` when they cannot be written (the journal offset then stays before them)."""
        self.damaged_bytes += setaside.save_damage(self.path, path, damaged)
        self.damaged += len(damaged)

    def _insert(self, records: list[journal.Record], file: str, offset: int) -> None:
        conn = self.conn()
        now, pid = time.time(), os.getpid()
        with _transaction(conn):
            conn.executemany(
                "INSERT INTO spool (event_id, key, payload, spooled_at, owner) VALUES (?, ?, ?, ?, ?)",
                [(e, k, p, now, pid) for e, k, p in records],
            )
            conn.execute(
                "INSERT INTO journal_offsets (file, offset) VALUES (?, ?) "
                "ON CONFLICT(file) DO UPDATE SET offset = excluded.offset",
                (file, offset),
            )

    @spool_guard
    def read_batch(self, limit: int) -> list[SpooledEvent]:
        rows = (
            self.conn()
            .execute(
                "SELECT seq, event_id, key, payload FROM spool WHERE owner = ? ORDER BY seq LIMIT ?",
                (os.getpid(), limit),
            )
            .fetchall()
        )
        return [
            SpooledEvent(seq, event_id, key, bytes(payload)) for seq, event_id, key, payload in rows
        ]

    @spool_guard
    def delete(self, batch: list[SpooledEvent]) -> None:
        self.conn().executemany("DELETE FROM spool WHERE seq = ?", [(e.seq,) for e in batch])

    @spool_guard
    def adopt_orphans(self) -> int:
        """Take over rows whose owner process is gone; returns how many."""
        conn, me, total = self.conn(), os.getpid(), 0
        for (owner,) in conn.execute(
            "SELECT DISTINCT owner FROM spool WHERE owner != ?", (me,)
        ).fetchall():
            if not _alive(int(owner)):
                total += conn.execute(
                    "UPDATE spool SET owner = ? WHERE owner = ?", (me, owner)
                ).rowcount
        return total

    @spool_guard
    def held_by_others(self) -> int:
        """Rows owned by other live processes (their relays will send them)."""
        return int(
            self.conn()
            .execute("SELECT count(*) FROM spool WHERE owner != ?", (os.getpid(),))
            .fetchone()[0]
        )

    @spool_guard
    def pending(self) -> int:
        """This process's undelivered events: its rows plus its journal frames not yet
        moved into the table."""
        rows = int(
            self.conn()
            .execute("SELECT count(*) FROM spool WHERE owner = ?", (os.getpid(),))
            .fetchone()[0]
        )
        if self.writer.path is None or self.pending_journal_bytes() <= 0:
            return rows
        return rows + len(
            journal.read_from(self.writer.path, self._ingested, end=self.writer.offset).records
        )

    @spool_guard
    def size_bytes(self) -> int:
        conn = self.conn()
        pages = (
            conn.execute("PRAGMA page_count").fetchone()[0]
            - conn.execute("PRAGMA freelist_count").fetchone()[0]
        )
        return (
            int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])
            + self.pending_journal_bytes()
        )

    @spool_guard
    def enforce_bound(self) -> int:
        """Re-evaluate the size bound; under ``drop_oldest`` delete the oldest undelivered
        events until under it. Returns how many were dropped (and logs it)."""
        size = self.size_bytes()
        self._over = size > self.max_bytes
        if not self._over or self.full_policy != "drop_oldest":
            return 0
        conn = self.conn()
        count = conn.execute("SELECT count(*) FROM spool").fetchone()[0]
        if not count:
            return 0
        per_row = max(1, size // count)
        drop = min(count, (size - self.max_bytes) // per_row + 1)
        with _transaction(conn):
            conn.execute(
                "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)",
                (drop,),
            )
            conn.execute(
                "INSERT INTO spool_stats (name, value) VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (drop,),
            )
        total = self.stats().get("dropped", 0)
        log.warning(
            "metatrail: spool %s over METATRAIL_SPOOL_MAX_BYTES=%d: dropped the %d oldest "
            "undelivered events (policy 'drop_oldest'; %d dropped in total)",
            self.path,
            self.max_bytes,
            drop,
            total,
        )
        self._over = False
        return int(drop)

    @spool_guard
    def stats(self) -> dict[str, int]:
        return {
            str(k): int(v) for k, v in self.conn().execute("SELECT name, value FROM spool_stats")
        }

    # --- digest record (``metatrail.producer.digest``) --------------------------------
    @spool_guard
    def digest_get(self, stat: tuple[str, int, int, int]) -> tuple[str, int] | None:
        """(digest, hashed_at_ns) recorded for the file at ``stat[0]`` when it had exactly
        this (size, mtime_ns, ctime_ns), else None."""
        row = (
            self.conn()
            .execute(
                "SELECT digest, hashed_at_ns FROM file_digests"
                " WHERE path = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ?",
                stat,
            )
            .fetchone()
        )
        return (str(row[0]), int(row[1])) if row else None

    @spool_guard
    def digest_put(self, stat: tuple[str, int, int, int], recorded: tuple[str, int]) -> None:
        """Record a file's digest with its stat (one row per path: the newest replaces)."""
        self.conn().execute(
            "INSERT OR REPLACE INTO file_digests"
            " (path, size, mtime_ns, ctime_ns, digest, hashed_at_ns) VALUES (?, ?, ?, ?, ?, ?)",
            (*stat, *recorded),
        )

    def abandon_after_fork(self) -> None:
        """In a forked child: drop (without closing) the parent's connections and journal."""
        self.writer.abandon_after_fork()
        _ABANDONED.extend(self._all)  # closing them in the child could disturb the parent
        _ABANDONED.append(self._local)
        self._local = threading.local()
        self._all = []
        self._all_lock = threading.Lock()
        self._ingest_lock = threading.Lock()
        self._ingested = 0
