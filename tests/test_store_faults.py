"""A database that is unwell is retried, never blamed on the events (design rule 5).

Real errors of each backend are classified by their driver codes; then, through
``metatrail consume`` with the real broker: a PostgreSQL ``lock_timeout`` under a held
table lock, a MariaDB lock wait timeout, and a SQLite store on a full disk dead-letter
nothing, and everything applies once the database is well again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import DBAPIError

from metatrail.consumer.apply import RawRecord, apply_records
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.faults import Fault, classify
from metatrail.consumer.store.migrate import upgrade
from metatrail.schemas.errors import StoreError, TransientStoreError
from metatrail.schemas.parse import dump_event
from tests.fixtures.backends import backend_url
from tests.fixtures.broker import kafka_test_settings
from tests.fixtures.service import (
    canonical_dump,
    committed_total,
    dead_letter_count,
    pipeline_workload,
    publish_events,
    running_loop,
    wait_for,
)


def _error(engine: Engine, *statements: str, params: dict[str, Any] | None = None) -> DBAPIError:
    """The driver error the last statement raises (the others prepare it)."""
    with engine.connect() as conn:
        for sql in statements[:-1]:
            conn.execute(text(sql))
        try:
            conn.execute(text(statements[-1]), params or {})
        except DBAPIError as exc:
            return exc
        finally:
            conn.rollback()
    raise AssertionError(f"{statements[-1]!r} did not fail")


def test_real_driver_errors_are_classified_by_their_codes(engine: Engine) -> None:
    dialect = engine.dialect.name
    insert = "INSERT INTO mt_types (kind, name, properties, description) VALUES (:k, :n, :p, NULL)"
    with engine.begin() as conn:
        conn.execute(text(insert), {"k": "artifact", "n": "Taken", "p": "{}"})
    # the event's fault: a value the store refuses
    not_null = _error(engine, insert, params={"k": "artifact", "n": "X", "p": None})
    assert classify(not_null) is Fault.REJECTED, not_null.orig
    if dialect != "sqlite":  # SQLite does not enforce lengths
        too_long = _error(engine, insert, params={"k": "artifact", "n": "x" * 300, "p": "{}"})
        assert classify(too_long) is Fault.REJECTED, too_long.orig
    # a concurrent apply that inserted the same row: retry
    duplicate = _error(engine, insert, params={"k": "artifact", "n": "Taken", "p": "{}"})
    assert classify(duplicate) is Fault.UNWELL, duplicate.orig
    # neither: a deployment or a bug
    missing = _error(engine, "SELECT * FROM mt_no_such_table")
    assert classify(missing) is Fault.BROKEN, missing.orig
    # and through the session scope, the errors callers see
    with pytest.raises(TransientStoreError):
        with session_scope(engine) as s:
            s.execute(text(insert), {"k": "artifact", "n": "Taken", "p": "{}"})
    with pytest.raises(StoreError) as info:
        with session_scope(engine) as s:
            s.execute(text("SELECT * FROM mt_no_such_table"))
    assert not info.value.retriable


def test_a_held_lock_is_unwell_on_every_backend(store_url: str) -> None:
    """Lock timeouts (PostgreSQL 55P03, MariaDB 1205, SQLite BUSY) are the database's
    trouble, not the event's."""
    holder = open_engine(store_url)
    waiter = _engine_with_short_lock_wait(store_url)
    try:
        with _table_locked(holder, "mt_applied_events"):
            with pytest.raises(TransientStoreError):
                with session_scope(waiter) as s:
                    s.execute(text("INSERT INTO mt_applied_events (event_id, kind, occurred_at, applied_at) "
                                   "VALUES ('x', 'k', '2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
    finally:
        holder.dispose()
        waiter.dispose()


def _engine_with_short_lock_wait(url: str) -> Engine:
    """An engine whose statements give up waiting for a lock after a fraction of a second
    (PostgreSQL lock_timeout, MariaDB lock_wait_timeout, SQLite busy_timeout)."""
    if url.startswith("postgresql"):
        return open_engine(url, connect_args={"options": "-c lock_timeout=300"})
    if url.startswith("mysql"):
        return open_engine(
            url, connect_args={"init_command": "SET SESSION lock_wait_timeout = 1, innodb_lock_wait_timeout = 1"}
        )
    engine = open_engine(url)  # after open_engine's own connect hook, which sets 30 s
    event.listen(engine, "connect", lambda dbapi_conn, _: dbapi_conn.execute("PRAGMA busy_timeout=200"))
    return engine


@contextlib.contextmanager
def _table_locked(engine: Engine, table: str) -> Iterator[None]:
    """Hold an exclusive lock on ``table`` (SQLite: the whole database) until exit."""
    with engine.connect() as conn:
        dialect = engine.dialect.name
        if dialect == "postgresql":
            conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        elif dialect == "sqlite":
            conn.exec_driver_sql("COMMIT")  # end the BEGIN the engine issued
            conn.exec_driver_sql("BEGIN EXCLUSIVE")
        else:
            conn.execute(text(f"LOCK TABLES {table} WRITE"))
        try:
            yield
        finally:
            if dialect == "mysql" or dialect == "mariadb":
                conn.execute(text("UNLOCK TABLES"))
            conn.rollback()


def _consume_through(
    kafka_bootstrap: str, topic_prefix: str, store_url: str, engine: Engine, trouble: contextlib.AbstractContextManager[Any],
    caplog: pytest.LogCaptureFixture, runs: int = 8,
) -> None:
    """Publish a workload, make the store unwell while the consumer applies it, make it
    well again: nothing dead-lettered, everything applied exactly once."""
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, store_url, kafka_max_poll_records=50,
                                   db_retry_attempts=200, db_retry_max_wait_s=0.5,
                                   kafka_max_poll_interval_ms=60_000)
    workload = pipeline_workload(runs=runs)
    caplog.set_level(logging.WARNING, logger="metatrail.apply")
    with running_loop(settings, engine) as loop:
        wait_for(lambda: bool(loop.assigned), 60, what="partitions assigned")
        with trouble:
            publish_events(kafka_bootstrap, settings.events_topic, workload.events)
            wait_for(lambda: "retrying the whole batch" in caplog.text, 60, what="a failed attempt retried")
            time.sleep(2.0)  # several attempts fail meanwhile
        wait_for(lambda: committed_total(settings, kafka_bootstrap) == len(workload.events), 120,
                 what="every offset committed once the database is well")
    assert dead_letter_count(engine) == 0
    assert canonical_dump(engine) == workload.expected()


@pytest.mark.kafka
def test_postgresql_lock_timeout_during_consumption_dead_letters_nothing(
    kafka_bootstrap: str, topic_prefix: str, server_databases: dict, tmp_path: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    store_url = backend_url("postgresql", server_databases, tmp_path)
    engine = _engine_with_short_lock_wait(store_url)
    holder = open_engine(store_url)
    try:
        _consume_through(kafka_bootstrap, topic_prefix, store_url, engine, _table_locked(holder, "mt_executions"),
                         caplog)
        assert "lock timeout" in caplog.text
    finally:
        engine.dispose()
        holder.dispose()


@pytest.mark.kafka
def test_mariadb_lock_wait_timeout_during_consumption_dead_letters_nothing(
    kafka_bootstrap: str, topic_prefix: str, server_databases: dict, tmp_path: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    store_url = backend_url("mariadb", server_databases, tmp_path)
    engine = _engine_with_short_lock_wait(store_url)
    holder = open_engine(store_url)
    try:
        _consume_through(kafka_bootstrap, topic_prefix, store_url, engine, _table_locked(holder, "mt_executions"),
                         caplog)
        assert "Lock wait timeout" in caplog.text
    finally:
        engine.dispose()
        holder.dispose()


@contextlib.contextmanager
def _small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk needs a tmpfs, and mounting one needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _fill(path: Path) -> Path:
    """Take every free byte of the file system at ``path`` with one file."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while os.write(fd, b"\0" * size) == size:
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


@pytest.mark.kafka
def test_sqlite_store_on_a_full_disk_dead_letters_nothing(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    with _small_tmpfs(tmp_path / "small", "4m") as mount:
        store_url = f"sqlite:///{mount}/metadata.db"
        engine = open_engine(store_url)
        upgrade(engine)
        filler = mount / "filler"

        @contextlib.contextmanager
        def disk_full() -> Iterator[None]:
            _fill(mount)
            try:
                yield
            finally:
                filler.unlink()

        try:
            _consume_through(kafka_bootstrap, topic_prefix, store_url, engine, disk_full(), caplog, runs=6)
            assert "database or disk is full" in caplog.text or "disk I/O error" in caplog.text
        finally:
            engine.dispose()


def test_apply_on_a_full_disk_fails_whole_without_dead_letters_and_applies_later(tmp_path: Path) -> None:
    """Without the broker, the one write path itself: a full disk is a transient error
    for the whole batch (no dead letter, nothing half written); once space returns the
    same records apply."""
    with _small_tmpfs(tmp_path / "small", "4m") as mount:
        store_url = f"sqlite:///{mount}/metadata.db"
        engine = open_engine(store_url)
        upgrade(engine)
        workload = pipeline_workload(runs=20)
        records = [RawRecord(dump_event(e), f"file:x:{i}") for i, e in enumerate(workload.events)]
        filler = _fill(mount)
        try:
            with pytest.raises(TransientStoreError, match="full|I/O"):
                apply_records(engine, records)
        finally:
            filler.unlink()
        report = apply_records(engine, records)
        assert (report.applied, report.dead_lettered) == (len(records), 0)
        assert dead_letter_count(engine) == 0
        engine.dispose()


def test_lock_holder_helper_is_released(store_url: str) -> None:
    """The lock helper itself releases its lock (guards the tests above)."""
    engine = open_engine(store_url)
    try:
        done = threading.Event()
        with _table_locked(engine, "mt_types"):
            done.set()
        with session_scope(engine) as s:
            s.execute(text("SELECT COUNT(*) FROM mt_types"))
        assert done.is_set()
    finally:
        engine.dispose()
