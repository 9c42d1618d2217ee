"""Open an MLMD store for reading, check that it is one, and name it.

An MLMD store is read with plain SQL (never through the ml-metadata library, which may
not install): a SQLite file (opened read-only) or a MySQL/MariaDB or PostgreSQL database
given as a SQLAlchemy URL. Schema versions 6 to 10 are read; the columns each table has
are looked up rather than assumed from the version.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from metatrail.schemas.errors import SourceError

#: MLMD schema versions this importer reads.
SUPPORTED_VERSIONS = range(6, 11)
#: Tables every supported schema has.
TABLES = ("MLMDEnv", "Type", "TypeProperty", "ParentType", "Artifact", "ArtifactProperty", "Execution",
          "ExecutionProperty", "Context", "ContextProperty", "ParentContext", "Event", "EventPath",
          "Attribution", "Association")


@dataclass
class MlmdSource:
    """An open MLMD store. ``tables`` maps MLMD's table names to the names in the
    database (PostgreSQL stores may fold them to lower case); ``columns`` holds each
    table's column names in lower case. Close it with ``close()``."""

    engine: Engine
    label: str
    schema_version: int
    tables: dict[str, str]
    columns: dict[str, frozenset[str]]
    identity: str = ""
    _closed: bool = field(default=False, repr=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def has(self, table: str, column: str) -> bool:
        """Whether ``table`` has ``column`` in this store's schema."""
        return column.lower() in self.columns[table]

    def quote(self, name: str) -> str:
        """A table (by its MLMD name) or column name, quoted for this database."""
        actual = self.tables.get(name, name)
        return str(self.engine.dialect.identifier_preparer.quote_identifier(actual))

    def close(self) -> None:
        if not self._closed:
            self.engine.dispose()
            self._closed = True


def open_source(location: str) -> MlmdSource:
    """Open the MLMD store at ``location`` (a SQLite file path, ``sqlite:///path``,
    ``mysql+pymysql://...`` or ``postgresql+psycopg://...``), check it and compute its
    identity. Never writes to it. Raises ``SourceError`` with one line saying what is wrong
    (missing file, not a database, not an MLMD store, unsupported version, damaged file)."""
    engine, label = _engine(location)
    try:
        source = _inspect(engine, label)
        with engine.connect() as conn:
            _check_integrity(conn, source)
            source.identity = _identity(conn, source)
        return source
    except SourceError:
        engine.dispose()
        raise
    except SQLAlchemyError as exc:
        engine.dispose()
        raise SourceError(f"{label}: cannot read it as an MLMD store: {short_error(exc)}") from exc


def short_error(exc: BaseException) -> str:
    """The first line of a driver error, without SQLAlchemy's decorations."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def _engine(location: str) -> tuple[Engine, str]:
    if "://" not in location:
        return _sqlite_engine(Path(location)), location
    try:
        url = make_url(location)
    except ArgumentError as exc:
        raise SourceError(f"cannot parse the store URL {location!r}: {exc}") from exc
    label = url.render_as_string(hide_password=True)
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise SourceError(f"{label}: give the path of the MLMD SQLite file")
        return _sqlite_engine(Path(url.database)), label
    if backend not in ("mysql", "mariadb", "postgresql"):
        raise SourceError(f"{label}: MLMD stores are SQLite, MySQL or PostgreSQL databases, not {backend}")
    try:
        # One snapshot for the whole import: pages read later see the same store.
        return create_engine(url, isolation_level="REPEATABLE READ", pool_pre_ping=True), label
    except (NoSuchModuleError, ImportError) as exc:
        raise SourceError(f"{label}: the driver is not installed ({exc}); install metatrail[mysql] "
                          "or metatrail[postgres]") from exc


def _sqlite_engine(path: Path) -> Engine:
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    return create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False))


def _inspect(engine: Engine, label: str) -> MlmdSource:
    try:
        inspector = inspect(engine)
        names = inspector.get_table_names()
    except DBAPIError as exc:
        reason = short_error(exc)
        if engine.dialect.name != "sqlite":
            raise SourceError(f"{label}: cannot read it as an MLMD store: {reason}") from exc
        if "malformed" in reason or "corrupt" in reason:
            raise SourceError(f"{label} is damaged or truncated: {reason}") from exc
        raise SourceError(f"{label} is not an SQLite database: {reason}") from exc
    by_lower = {n.lower(): n for n in names}
    if "mlmdenv" not in by_lower:
        raise SourceError(f"{label} is not an MLMD store (it has no MLMDEnv table)")
    missing = [t for t in TABLES if t.lower() not in by_lower]
    if missing:
        raise SourceError(f"{label} is not a complete MLMD store (no {', '.join(missing)} table)")
    tables = {t: by_lower[t.lower()] for t in TABLES}
    source = MlmdSource(engine, label, 0, tables, {})
    with engine.connect() as conn:
        for table in tables:  # names from the cursor: no type reflection of MLMD's DDL
            with conn.execute(text(f"SELECT * FROM {source.quote(table)} WHERE 1 = 0")) as result:
                source.columns[table] = frozenset(d[0].lower() for d in result.cursor.description)
        versions = [r[0] for r in conn.execute(text(f"SELECT schema_version FROM {source.quote('MLMDEnv')}"))]
    if len(versions) != 1 or not isinstance(versions[0], int):
        raise SourceError(f"{label}: MLMDEnv holds {versions!r}, not one schema version")
    if versions[0] not in SUPPORTED_VERSIONS:
        raise SourceError(f"{label}: MLMD schema version {versions[0]} is not supported "
                          f"(versions {SUPPORTED_VERSIONS.start} to {SUPPORTED_VERSIONS.stop - 1} are)")
    source.schema_version = versions[0]
    return source


def _check_integrity(conn: Connection, source: MlmdSource) -> None:
    """A truncated or damaged SQLite file is refused before anything is imported (SQLite
    would otherwise fail part-way through). Servers keep their own tables whole."""
    if source.dialect != "sqlite":
        return
    problems = [r[0] for r in conn.exec_driver_sql("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise SourceError(f"{source.label} is damaged or truncated: {'; '.join(str(p) for p in problems)}")


def _identity(conn: Connection, source: MlmdSource) -> str:
    """A name for the store that does not depend on where it lives: a hash of its oldest
    context, artifact and execution (or of its types when it has no nodes yet). A copy of
    the store, moved anywhere, has the same identity, so importing it again finds the nodes
    the first import made; two different stores differ in their oldest nodes."""
    parts: list[Any] = []
    for table in ("Context", "Artifact", "Execution"):
        quoted = source.quote(table)
        row = conn.execute(text(
            f"SELECT id, type_id, name, create_time_since_epoch FROM {quoted} "
            f"WHERE id = (SELECT MIN(id) FROM {quoted})")).first()
        parts.append(tuple(row) if row is not None else None)
    if parts == [None, None, None]:
        parts = sorted(tuple(r) for r in conn.execute(text(f"SELECT name, type_kind FROM {source.quote('Type')}")))
    return hashlib.sha256(repr(parts).encode("utf-8")).hexdigest()[:32]
