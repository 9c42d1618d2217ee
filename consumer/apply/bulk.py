"""Fast multi-row writes: one ``INSERT ... VALUES (...), (...)`` per chunk of rows, with
the conflict clause each dialect needs, executed on the driver directly.

Why not plain SQLAlchemy executemany: its per-row parameter processing cost more than
the database work (about 20 µs a row), and psycopg pipelines one statement per row. Here
values are converted once per column by a converter chosen per column type, and a batch
of 500 events (about 2,500 rows) takes a handful of round trips on every backend.

Modes: ``insert`` (a key conflict is an error: a concurrent applier raced us),
``ignore`` (set semantics), ``keep_min`` (on conflict keep the smaller value of one
column), ``replace`` (on conflict overwrite every non-key column: how merged rows that
already exist are written back).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from functools import lru_cache
from operator import itemgetter
from typing import Any, Literal

import orjson
from sqlalchemy import Boolean, Table
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from metatrail.consumer.store.types import JSONText, UTCDateTime

Mode = Literal["insert", "ignore", "keep_min", "replace"]
#: Bind parameters per statement: below PostgreSQL's 65,535 and SQLite's 32,766.
MAX_PARAMS = 30_000


def _utc_naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(tzinfo=None)


def _utc_sqlite_text(value: datetime | None) -> str | None:
    # The exact text SQLAlchemy's SQLite DATETIME stores and parses back: the UTC time's
    # ISO text without its "+00:00" (sliced off rather than made naive first: cheaper).
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(sep=" ", timespec="microseconds")[:26]


def _json_text(value: Any) -> str | None:
    """Canonical JSON text (keys sorted, no spaces) of a JSON column's value. orjson (the
    standard library's sorted dump was a fifth of an OpenLineage batch's apply time); a
    value it cannot write (an integer beyond 64 bits) goes through the standard library."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


_ORJSON_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def _sqlite_bool(value: bool | None) -> int | None:
    return None if value is None else int(value)


_TIME_CONVERTERS = (_utc_sqlite_text, _utc_naive)


def _converter(column_type: Any, dialect: str) -> Callable[[Any], Any] | None:
    if isinstance(column_type, UTCDateTime):
        return _utc_sqlite_text if dialect == "sqlite" else _utc_naive
    if isinstance(column_type, JSONText):
        return _json_text
    if isinstance(column_type, Boolean) and dialect != "postgresql":
        return _sqlite_bool
    return None


@lru_cache(maxsize=256)
def _plan(table: Table, columns: tuple[str, ...], dialect: str, mode: Mode, min_column: str | None) -> tuple[str, str, list[Any]]:
    """(statement head, conflict clause, converters) for a table, columns and mode."""
    quote = _quoter(dialect)
    keys = [c.name for c in table.primary_key.columns]
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) VALUES "
    non_keys = [c for c in columns if c not in keys]
    if mode == "insert":
        tail = ""
    elif dialect in ("mysql", "mariadb"):
        if mode == "ignore":
            first = next(iter(keys)) if keys else columns[0]
            tail = f" ON DUPLICATE KEY UPDATE {quote(first)} = {quote(first)}"
        elif mode == "keep_min":
            col = quote(min_column or "")
            tail = f" ON DUPLICATE KEY UPDATE {col} = LEAST({col}, VALUES({col}))"
        else:
            tail = " ON DUPLICATE KEY UPDATE " + ", ".join(f"{quote(c)} = VALUES({quote(c)})" for c in non_keys)
    else:
        target = f"({', '.join(quote(k) for k in keys)})"
        if mode == "ignore":
            tail = " ON CONFLICT DO NOTHING"
        elif mode == "keep_min":
            col = quote(min_column or "")
            least = "LEAST" if dialect == "postgresql" else "MIN"
            tail = f" ON CONFLICT {target} DO UPDATE SET {col} = {least}({quote(table.name)}.{col}, excluded.{col})"
        else:
            tail = f" ON CONFLICT {target} DO UPDATE SET " + ", ".join(f"{quote(c)} = excluded.{quote(c)}" for c in non_keys)
    converters = [_converter(table.c[c].type, dialect) for c in columns]
    return head, tail, converters


def _tuples(rows: Sequence[dict[str, Any]], columns: tuple[str, ...], converters: list[Any]) -> list[Any]:
    """Rows as positional value tuples, converting only the columns that need it (column
    by column with ``map``: no Python loop per row)."""
    getter = itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    if all(conv is None for conv in converters):
        return list(map(getter, rows))
    cols: list[Any] = list(zip(*map(getter, rows)))
    times: dict[Any, Any] = {}  # a batch repeats its times (an event's stamps): convert each once
    for i, conv in enumerate(converters):
        if conv in _TIME_CONVERTERS:
            cols[i] = [times[v] if v in times else times.setdefault(v, conv(v)) for v in cols[i]]
        elif conv is not None:
            cols[i] = map(conv, cols[i])
    return list(zip(*cols))


@lru_cache(maxsize=4096)
def _iso(value: datetime | None) -> str | None:
    # PostgreSQL's timestamp (without time zone) input ignores the offset: UTC it is.
    # Cached: a batch's rows repeat the same few times (an event's stamp on each of its
    # properties), and formatting them was a few per cent of a batch.
    if value is None:
        return None
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat()


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


@lru_cache(maxsize=256)
def _recordset_select(table: Table, columns: tuple[str, ...]) -> tuple[str, list[tuple[str, Any]]]:
    """``SELECT ... FROM json_to_recordset(%s::json) AS r(col type, ...)`` and the
    converters from driver values to JSON (timestamps as ISO text, bytes as hex)."""
    from sqlalchemy import LargeBinary
    from sqlalchemy.dialects import postgresql

    pg = postgresql.dialect()
    quote = _quoter("postgresql")
    fields, picks, converters = [], [], []
    for name in columns:
        column_type = table.c[name].type
        if isinstance(column_type, LargeBinary):
            fields.append(f"{quote(name)} text")
            picks.append(f"decode(r.{quote(name)}, 'hex')")
            converters.append((name, _hex))
            continue
        fields.append(f"{quote(name)} {column_type.compile(dialect=pg)}")
        picks.append(f"r.{quote(name)}")
        if isinstance(column_type, UTCDateTime):
            converters.append((name, _iso))
        elif isinstance(column_type, JSONText):
            converters.append((name, _json_text))  # stored as canonical text
        else:
            converters.append((name, None))
    select = f"SELECT {', '.join(picks)} FROM json_to_recordset(%s::json) AS r({', '.join(fields)})"
    return select, converters


def _quoter(dialect: str) -> Callable[[str], str]:
    if dialect in ("mysql", "mariadb"):
        return lambda name: f"`{name}`"
    return lambda name: f'"{name}"'


def write(
    session: Session,
    table: Table,
    rows: Sequence[dict[str, Any]],
    mode: Mode = "insert",
    min_column: str | None = None,
) -> None:
    """Write ``rows`` (dicts with the same keys) to ``table`` inside the session's
    transaction. Raises the driver's IntegrityError (wrapped by SQLAlchemy) on a key
    conflict in ``insert`` mode."""
    if not rows:
        return
    connection = session.connection()
    dialect = connection.dialect.name
    columns = tuple(rows[0])
    head, tail, converters = _plan(table, columns, dialect, mode, min_column)
    if dialect == "postgresql":
        connection.exec_driver_sql(*_recordset_insert(table, rows, columns, head, tail))
        return
    values = _tuples(rows, columns, converters)
    if dialect == "sqlite":
        # No round trips to save: one prepared statement, executemany.
        one_row = "(" + ", ".join(["?"] * len(columns)) + ")"
        connection.exec_driver_sql(head + one_row + tail, values)
        return
    for sql, flat in _multirow_statements(head, tail, values, len(columns)):
        connection.exec_driver_sql(sql, flat)


def _multirow_statements(head: str, tail: str, values: list[Any], width: int) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """MySQL/MariaDB: ``head (...), (...) tail`` statements with their flat parameters,
    as many rows each as stay under ``MAX_PARAMS``."""
    one_row = "(" + ", ".join(["%s"] * width) + ")"
    per_statement = max(1, MAX_PARAMS // width)
    for start in range(0, len(values), per_statement):
        part = values[start : start + per_statement]
        yield head + ", ".join([one_row] * len(part)) + tail, tuple(v for row in part for v in row)


def _recordset_insert(table: Table, rows: Sequence[dict[str, Any]], columns: tuple[str, ...], head: str,
                      tail: str) -> tuple[str, tuple[str]]:
    """PostgreSQL's statement and parameter for ``rows``: the whole chunk as one JSON
    document, expanded server-side by json_to_recordset (json.dumps runs in C, and psycopg
    handles one parameter instead of dumping thousands: it does that in Python)."""
    select, json_converters = _recordset_select(table, columns)
    converting = [(c, conv) for c, conv in json_converters if conv is not None]
    documents = []
    for row in rows:
        document = dict(row)
        for c, conv in converting:
            document[c] = conv(document[c])
        documents.append(document)
    try:
        payload = orjson.dumps(documents).decode()
    except TypeError:  # see _json_text
        payload = json.dumps(documents, separators=(",", ":"), allow_nan=False)
    return head.removesuffix("VALUES ") + select + tail, (payload,)


def can_claim(session: Session) -> bool:
    """Whether ``claim`` works here: PostgreSQL and MariaDB insert with RETURNING (MySQL
    does not; SQLite runs one writing transaction at a time, so it has no race to avoid)."""
    dialect = session.connection().dialect
    return dialect.name == "postgresql" or bool(getattr(dialect, "is_mariadb", False))


def claim(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> set[Any]:
    """Insert those of ``rows`` whose key is not in ``table`` yet and return their keys
    (a one-column primary key; see ``can_claim``). A key a concurrent transaction is
    inserting waits for it to end and is not returned if it committed: rows are claimed,
    not raced for. Rows go in key order, so two transactions claiming overlapping keys wait
    for each other, never deadlock."""
    (key,) = (c.name for c in table.primary_key.columns)
    ordered = sorted(rows, key=itemgetter(key))
    if not ordered:
        return set()
    connection = session.connection()
    dialect = connection.dialect.name
    columns = tuple(ordered[0])
    if dialect == "postgresql":
        head, tail, _ = _plan(table, columns, dialect, "ignore", None)
        sql, params = _recordset_insert(table, ordered, columns, head, tail)
        return set(connection.exec_driver_sql(f'{sql} RETURNING "{key}"', params).scalars())
    # MariaDB: INSERT IGNORE, which also turns a value the column cannot hold into a
    # warning; claimed rows are made by apply itself (ids, kinds, times), never by input.
    head, _, converters = _plan(table, columns, dialect, "insert", None)
    head = head.replace("INSERT INTO", "INSERT IGNORE INTO", 1)
    values = _tuples(ordered, columns, converters)
    claimed: set[Any] = set()
    for sql, flat in _multirow_statements(head, f" RETURNING `{key}`", values, len(columns)):
        claimed.update(connection.exec_driver_sql(sql, flat).scalars())
    return claimed


class WriteQueue:
    """Writes collected while a batch is merged, sent in order by ``send``.

    On PostgreSQL they go out in one psycopg pipeline: each statement is sent without
    waiting for the previous one's result, so the server inserts one chunk while the next
    is being encoded, and the batch pays one round trip for all of them. A statement's
    error surfaces when the pipeline syncs; it is raised as SQLAlchemy raises driver
    errors (``IntegrityError`` on a key conflict), like every other path here.
    """

    def __init__(self) -> None:
        self._writes: list[tuple[Table, Sequence[dict[str, Any]], Mode, str | None]] = []

    def add(self, table: Table, rows: Sequence[dict[str, Any]], mode: Mode = "insert", min_column: str | None = None) -> None:
        if rows:
            self._writes.append((table, rows, mode, min_column))

    def send(self, session: Session) -> None:
        connection = session.connection()
        if connection.dialect.name != "postgresql" or len(self._writes) < 2:
            self._write_each(session)
            return
        import psycopg

        try:
            with connection.connection.driver_connection.pipeline():
                self._write_each(session)
        except psycopg.Error as exc:
            raise DBAPIError.instance(None, None, exc, psycopg.Error) from exc

    def _write_each(self, session: Session) -> None:
        for table, rows, mode, min_column in self._writes:
            write(session, table, rows, mode, min_column)
