"""Set-based writes that differ per dialect: locked loads, bulk inserts and updates, and
upserts (SQLite and PostgreSQL ``ON CONFLICT``, MySQL ``ON DUPLICATE KEY UPDATE``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, insert, select, tuple_, update
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session

#: Ids per IN (...) list: far below every backend's parameter limit.
CHUNK = 500


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _locks(session: Session) -> bool:
    # SQLite takes the whole-database write lock at BEGIN IMMEDIATE; the others lock rows.
    return session.get_bind().dialect.name != "sqlite"


def load_rows(session: Session, table: Table, key: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Rows whose ``key`` is in ``ids``, locked for update where the backend locks rows.
    Ids are sorted so concurrent appliers lock in the same order (fewer deadlocks)."""
    ordered = sorted(set(ids))
    found: dict[str, dict[str, Any]] = {}
    column = table.c[key]
    for part in chunks(ordered):
        stmt = select(table).where(column.in_(part)).order_by(column)
        if _locks(session):
            stmt = stmt.with_for_update()
        for row in session.execute(stmt).mappings():
            found[row[key]] = dict(row)
    return found


def load_rows_by(
    session: Session, table: Table, column: str, values: Iterable[str]
) -> list[dict[str, Any]]:
    """All rows whose ``column`` is in ``values`` (no lock: the owning node is locked)."""
    ordered = sorted(set(values))
    rows: list[dict[str, Any]] = []
    for part in chunks(ordered):
        stmt = select(table).where(table.c[column].in_(part))
        rows.extend(dict(r) for r in session.execute(stmt).mappings())
    return rows


def existing_keys(session: Session, table: Table, key: str, ids: Iterable[str]) -> set[str]:
    ordered = sorted(set(ids))
    found: set[str] = set()
    for part in chunks(ordered):
        found.update(session.execute(select(table.c[key]).where(table.c[key].in_(part))).scalars())
    return found


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(table), list(rows))


def update_rows(session: Session, table: Table, keys: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    """UPDATE by primary key, every row setting the same columns (one executemany)."""
    if not rows:
        return
    columns = [c for c in rows[0] if c not in keys]
    stmt = (
        update(table)
        .where(and_(*(table.c[k] == bindparam(f"k_{k}") for k in keys)))
        .values({c: bindparam(f"v_{c}") for c in columns})
    )
    params = [
        {**{f"k_{k}": r[k] for k in keys}, **{f"v_{c}": r[c] for c in columns}} for r in rows
    ]
    session.execute(stmt, params)


def insert_ignore(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], noop_column: str | None = None
) -> None:
    """Insert rows, leaving those that hit any unique key untouched (set semantics).

    MySQL has no "do nothing": a no-op assignment of ``noop_column`` (default: the first
    primary-key column) stands in for it.
    """
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:
        column = noop_column or next(iter(table.primary_key.columns)).name
        ins = mysql.insert(table)
        stmt = ins.on_duplicate_key_update({column: table.c[column]})
    session.execute(stmt, list(rows))


def insert_keep_min(session: Session, table: Table, rows: Sequence[dict[str, Any]], column: str) -> None:
    """Insert rows; on a key conflict keep the smaller ``column`` value (order-insensitive)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    keys = [c.name for c in table.primary_key.columns]
    existing = table.c[column]
    if dialect == "postgresql":
        pg = postgresql.insert(table)
        stmt: Any = pg.on_conflict_do_update(
            index_elements=keys, set_={column: func.least(existing, pg.excluded[column])}
        )
    elif dialect == "sqlite":
        lite = sqlite.insert(table)
        stmt = lite.on_conflict_do_update(
            index_elements=keys, set_={column: func.min(existing, lite.excluded[column])}
        )
    else:
        my = mysql.insert(table)
        stmt = my.on_duplicate_key_update({column: func.least(existing, my.inserted[column])})
    session.execute(stmt, list(rows))


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
