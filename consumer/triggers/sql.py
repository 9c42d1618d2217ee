"""Dialect-specific writes the orchestration tables need: insert-or-ignore and upsert.

A unique key turns a second request for the same work into a no-op (design rule 7), so
every write here is idempotent. SQLite and PostgreSQL use ``ON CONFLICT``; MySQL/MariaDB
use ``INSERT IGNORE`` (whose affected-row count is 0 for an ignored row, unlike ``ON
DUPLICATE KEY UPDATE`` under the FOUND_ROWS client flag that PyMySQL sets).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.orm import Session


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def insert_ignore(session: Session, table: Table, row: Mapping[str, Any]) -> bool:
    """Insert ``row`` unless its key exists. Returns True when this call inserted it."""
    name = _dialect(session)
    if name == "sqlite":
        stmt: Any = sqlite.insert(table).values(**row).on_conflict_do_nothing()
    elif name == "postgresql":
        stmt = postgresql.insert(table).values(**row).on_conflict_do_nothing()
    elif name in ("mysql", "mariadb"):
        stmt = insert(table).values(**row).prefix_with("IGNORE")
    else:  # pragma: no cover - the store supports the three dialects above
        raise NotImplementedError(f"no insert-ignore for dialect {name!r}")
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


def upsert(
    session: Session, table: Table, row: Mapping[str, Any], key: Sequence[str]
) -> None:
    """Insert ``row`` or, when its key exists, overwrite the other columns with it."""
    name = _dialect(session)
    update = {k: v for k, v in row.items() if k not in key}
    if name == "sqlite":
        ins: Any = sqlite.insert(table).values(**row)
        stmt: Any = ins.on_conflict_do_update(index_elements=list(key), set_=update)
    elif name == "postgresql":
        ins = postgresql.insert(table).values(**row)
        stmt = ins.on_conflict_do_update(index_elements=list(key), set_=update)
    elif name in ("mysql", "mariadb"):
        stmt = mysql.insert(table).values(**row).on_duplicate_key_update(**update)
    else:  # pragma: no cover
        raise NotImplementedError(f"no upsert for dialect {name!r}")
    session.execute(stmt)
