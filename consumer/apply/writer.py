"""Set-based reads of the rows a batch will merge into, locked where the backend locks
rows (the writes are in ``metatrail.consumer.apply.bulk``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import String, Table, bindparam, cast, false, func, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import JSON
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from metatrail.consumer.store.batching import chunks


def _member_of(session: Session, column: Any, values: Sequence[str]) -> Any:
    """``column IN values``; on PostgreSQL and SQLite as ``column IN (SELECT value FROM
    <elements of a JSON array>)``: one text parameter, written by ``json.dumps`` in C,
    instead of hundreds (SQLAlchemy's expanding IN, and psycopg's list dumper, handle each
    element in Python: about 3 µs an id on PostgreSQL). The server expands the array and
    probes the key's index per element."""
    dialect = session.get_bind().dialect.name
    if dialect not in ("postgresql", "sqlite"):
        return column.in_(values)
    document = bindparam("members", json.dumps(list(values)), type_=String())
    if dialect == "postgresql":
        elements = func.json_array_elements_text(cast(document, JSON))
    else:
        elements = func.json_each(document)
    return column.in_(select(literal_column("value")).select_from(elements))


#: Ids per read where they travel as one JSON parameter (no bound on parameters to stay
#: under): a batch's ids in one statement rather than one per 500.
_JSON_MEMBERS_PER_READ = 10_000


def _parts(session: Session, ordered: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """``ordered`` in slices of as many ids as one read of this backend takes."""
    json_members = session.get_bind().dialect.name in ("postgresql", "sqlite")
    return chunks(ordered, _JSON_MEMBERS_PER_READ) if json_members else chunks(ordered)


def _locks(session: Session) -> bool:
    # SQLite takes the whole-database write lock at BEGIN IMMEDIATE; the others lock rows.
    return session.get_bind().dialect.name != "sqlite"


def load_rows(session: Session, table: Table, key: str, ids: Iterable[str], *,
              nowait: bool = False) -> dict[str, dict[str, Any]]:
    """Rows whose ``key`` is in ``ids``, locked for update where the backend locks rows
    (``nowait``: failing at once if another transaction holds one). Ids are sorted so
    concurrent appliers lock in the same order (fewer deadlocks)."""
    ordered = sorted(set(ids))
    found: dict[str, dict[str, Any]] = {}
    column = table.c[key]
    for part in _parts(session, ordered):
        stmt = select(table).where(_member_of(session, column, part)).order_by(column)
        if _locks(session):
            stmt = stmt.with_for_update(nowait=nowait)
        for row in session.execute(stmt).mappings():
            found[row[key]] = dict(row)
    return found


def load_rows_to_merge(session: Session, table: Table, key: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``load_rows``; on PostgreSQL, when the read had to wait for a lock, the ids it did
    not find are read once more. Why: a concurrent applier holding one of these rows may
    insert others of them and commit while the read waits; the read's snapshot predates
    that commit, so it misses them, and inserting them would fail on their keys and retry
    the whole batch. A second statement sees them (and locks them): the batch merges into
    them. (MariaDB's locking reads see the latest committed rows: no second read.)
    Concurrent appliers share rows all the time (a pipeline's datasets, an OpenLineage
    job's context, the parent run every task of a DAG run names).

    Whether the read waited: it first runs with NOWAIT inside a savepoint; only when a
    row is locked by someone else does it wait, and then read again. Uncontended, that
    costs a savepoint, where reading every missing id again cost 4-7% of apply."""
    wanted = set(ids)
    if session.get_bind().dialect.name != "postgresql" or not wanted:
        return load_rows(session, table, key, wanted)
    try:
        with session.begin_nested():
            return load_rows(session, table, key, wanted, nowait=True)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != _LOCK_NOT_AVAILABLE:
            raise
        _drop_tracebacks(exc)
    found = load_rows(session, table, key, wanted)
    if len(found) < len(wanted):
        found.update(load_rows(session, table, key, wanted - found.keys()))
    return found


#: PostgreSQL's SQLSTATE for a NOWAIT read that met a row locked by another transaction.
_LOCK_NOT_AVAILABLE = "55P03"


def _drop_tracebacks(exc: BaseException) -> None:
    """Forget the tracebacks of a handled error and of the errors it chains. Why: a
    traceback holds the frames the error passed through, one of which (SQLAlchemy's
    error handler) holds the error: a reference cycle, through which every frame of the
    stack kept its locals, the whole batch (~50,000 objects), alive until the cyclic
    collector ran, and that collection then traversed them all (~8% of a contended
    server's CPU)."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None
        pending += [error.__cause__, error.__context__, getattr(error, "orig", None)]


def load_rows_by(
    session: Session, table: Table, column: str, values: Iterable[str]
) -> list[dict[str, Any]]:
    """All rows whose ``column`` is in ``values`` (no lock: the owning node is locked)."""
    ordered = sorted(set(values))
    rows: list[dict[str, Any]] = []
    for part in _parts(session, ordered):
        stmt = select(table).where(_member_of(session, table.c[column], part))
        rows.extend(dict(r) for r in session.execute(stmt).mappings())
    return rows


def settled_ids(session: Session, table: Table, ids: Iterable[str]) -> set[str]:
    """The ids among ``ids`` of nodes already recorded (not placeholders). Not locked:
    a recorded node never goes back to being a placeholder."""
    ordered = sorted(set(ids))
    found: set[str] = set()
    for part in _parts(session, ordered):
        stmt = select(table.c.id).where(_member_of(session, table.c.id, part), table.c.is_placeholder == false())
        found.update(session.execute(stmt).scalars())
    return found


def existing_keys(session: Session, table: Table, key: str, ids: Iterable[str]) -> set[str]:
    ordered = sorted(set(ids))
    found: set[str] = set()
    for part in _parts(session, ordered):
        stmt = select(table.c[key]).where(_member_of(session, table.c[key], part))
        found.update(session.execute(stmt).scalars())
    return found


def load_by_composite(
    session: Session, table: Table, keys: Sequence[str], wanted: Iterable[tuple[Any, ...]]
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Rows whose composite key is in ``wanted``, locked where the backend locks rows."""
    ordered = sorted(set(wanted))
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    cols = [table.c[k] for k in keys]
    for part in chunks(ordered):
        stmt = select(table).where(tuple_(*cols).in_(list(part)))
        if _locks(session):
            stmt = stmt.with_for_update()
        for row in session.execute(stmt).mappings():
            found[tuple(row[k] for k in keys)] = dict(row)
    return found
