"""Engines and the one session scope every database write goes through.

The session scope commits or rolls back, and translates driver errors by what they mean
(``metatrail.consumer.store.faults``): ``TransientStoreError`` when the database is unwell
(retrying the same transaction may succeed: dropped connection, deadlock, lock timeout,
serialization failure, server shutting down, disk full, SQLite busy),
``StoreRejectedError`` when it refuses a value the work carries (the event is at fault),
``StoreError`` otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from metatrail.consumer.store.faults import Fault, classify
from metatrail.schemas.errors import (
    ConfigError,
    StoreError,
    StoreNotFoundError,
    StoreRejectedError,
    TransientStoreError,
)
from metatrail.schemas.files import private_file
from metatrail.schemas.urls import mask_url, scrub


def open_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a store URL, tuned per dialect.

    SQLite files are created 0600 (their parent folder 0700, when created), with WAL
    journaling and a busy timeout, and write transactions take the write lock at BEGIN
    (``BEGIN IMMEDIATE``) so two writers never deadlock upgrading a read lock. Raises ``ConfigError`` on a URL SQLAlchemy
    cannot parse or whose driver is not installed.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError, ValueError...
        raise ConfigError(f"METATRAIL_STORE_URL: cannot parse {mask_url(url)!r}: {scrub(str(exc), url)}") from exc
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(url, parsed.database, **kwargs)
        options: dict[str, Any] = {"pool_pre_ping": True, "pool_recycle": 3600}
        if backend in ("mysql", "mariadb"):
            options["isolation_level"] = "READ COMMITTED"
        options.update(kwargs)
        return create_engine(url, **options)
    except ImportError as exc:
        raise ConfigError(
            f"METATRAIL_STORE_URL: the driver for {backend!r} is not installed ({scrub(str(exc), url)}); "
            "install metatrail[postgres] or metatrail[mysql]"
        ) from exc
    except SQLAlchemyError as exc:
        raise ConfigError(f"METATRAIL_STORE_URL: {scrub(str(exc), url)}") from exc


#: A table every metatrail schema has: its presence tells a store from any other database.
_MARKER_TABLE = "mt_executions"
#: "No such database": PostgreSQL's SQLSTATE, MySQL/MariaDB's error number.
_PG_NO_DATABASE = "3D000"
_MYSQL_NO_DATABASE = 1049


def write_engine(read_engine: Engine) -> Engine:
    """An engine for writes on the database ``read_engine`` reads. A store's read engine
    runs without transactions on database servers (each statement sees committed data);
    apply needs one transaction per batch, with its row locks and savepoints. The caller
    disposes it."""
    return open_engine(read_engine.url.render_as_string(hide_password=False))


@contextmanager
def writing(read_engine: Engine) -> Iterator[Engine]:
    """``write_engine`` for one block of writes (a CLI command's apply), disposed after."""
    engine = write_engine(read_engine)
    try:
        yield engine
    finally:
        engine.dispose()


def open_existing(url: str, **kwargs: Any) -> Engine:
    """An engine on a store that already exists, for reads (``Store.open``, the CLI's read
    commands), which must create nothing: no SQLite file or folder, no tables.

    Blocking: connects once to look for the schema. Raises ``StoreNotFoundError`` (one
    line: the URL without its password, and how to get a store) when the SQLite file or
    the database does not exist or holds no metatrail tables; ``ConfigError`` for a bad
    URL; ``StoreError`` / ``TransientStoreError`` when the database cannot be reached.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(f"METATRAIL_STORE_URL: cannot parse {mask_url(url)!r}: {scrub(str(exc), url)}") from exc
    if parsed.get_backend_name() == "sqlite" and not _sqlite_in_memory(parsed.database):
        if not Path(str(parsed.database)).expanduser().is_file():
            raise _no_store(parsed)
    engine = open_engine(url, **kwargs)
    try:
        with engine.connect() as conn:
            found = inspect(conn).has_table(_MARKER_TABLE)
    except SQLAlchemyError as exc:
        engine.dispose()
        if _no_database(exc):
            raise _no_store(parsed) from exc
        raise store_error(exc) from exc
    if not found:
        engine.dispose()
        raise _no_store(parsed)
    return engine


def _no_database(exc: SQLAlchemyError) -> bool:
    """Whether connecting failed because the URL's database does not exist. libpq reports
    that at connection time without a SQLSTATE, in its (English) message."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", None) or (None,)
    if args[0] == _MYSQL_NO_DATABASE or getattr(orig, "sqlstate", None) == _PG_NO_DATABASE:
        return True
    text = str(orig)
    return "database" in text and "does not exist" in text


def _no_store(url: URL) -> StoreNotFoundError:
    return StoreNotFoundError(
        f"no metatrail store at {url.render_as_string(hide_password=True)}: record something first "
        "(a tracked call, `metatrail demo`, `metatrail ingest`) or run `metatrail db upgrade`; "
        "or set METATRAIL_STORE_URL (or --url) to an existing store"
    )


def _sqlite_in_memory(database: str | None) -> bool:
    return not database or database == ":memory:" or database.startswith("file::memory")


#: Pages of write-ahead log after which a commit checkpoints it into the database file.
WAL_CHECKPOINT_PAGES = 10_000


def _sqlite_engine(url: str, database: str | None, **kwargs: Any) -> Engine:
    in_memory = _sqlite_in_memory(database)
    if not in_memory:  # created 0600 in a 0700 folder; SQLite gives -wal/-shm its mode
        private_file(Path(database).expanduser())
    engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        if not in_memory:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            # Checkpoint every ~40 MB of log, not every 4 MB: a batch into a large store
            # (or an MLMD import) dirties thousands of index pages, so the default
            # checkpointed at nearly every commit; an index page several batches change is
            # now written back once (commit time halved on the 1M-node bench store).
            # Durability is of the same kind: with synchronous=NORMAL the log is synced at
            # checkpoints, so a power loss (not a process crash) can take back the commits
            # since the last one: up to ~40 MB of them now.
            cur.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get("metatrail_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the transaction that raised ``exc`` may succeed (the database is
    unwell, not the work wrong)."""
    if isinstance(exc, TransientStoreError):
        return True
    return classify(exc) is Fault.UNWELL


@contextmanager
def session_scope(engine: Engine, *, write: bool = True) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error.

    Raises ``TransientStoreError`` for errors a retry may cure, ``StoreRejectedError`` when
    the database refuses a value written, ``StoreError`` for other database errors; other
    exceptions pass through unchanged (after the rollback).
    """
    bind = engine.execution_options(metatrail_write=write) if engine.dialect.name == "sqlite" else engine
    session = Session(bind=bind, expire_on_commit=False, autoflush=False)
    try:
        yield session
        session.commit()
    except SQLAlchemyError as exc:
        _rollback_quietly(session)
        raise store_error(exc) from exc
    except BaseException:
        _rollback_quietly(session)
        raise
    finally:
        session.close()


def store_error(exc: SQLAlchemyError) -> StoreError:
    """Our error for a database error, by what it means (see the module doc)."""
    fault = classify(exc)
    if fault is Fault.UNWELL:
        return TransientStoreError(f"transient database error: {_short(exc)}")
    if fault is Fault.REJECTED:
        return StoreRejectedError(f"the store refused a value: {_short(exc)}")
    return StoreError(f"database error: {_short(exc)}")


def _rollback_quietly(session: Session) -> None:
    try:
        session.rollback()
    except SQLAlchemyError:
        pass  # the connection is gone; the pool discards it


def _short(exc: SQLAlchemyError) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
