"""Ordering and keyset (cursor) pagination over any sort keys.

A page is ordered by the requested key (NULLs last), then by id; the cursor encodes the
last row's key values and id, so the next page starts strictly after it even while rows
are being added (no OFFSET scans). The cursor is opaque to callers (base64 JSON).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Select, and_, case, false, or_, select

from metatrail.consumer.query import sqlparts as sp
from metatrail.consumer.query.compile import PROPERTY_HEADS, EXECUTION, Entity
from metatrail.consumer.query.filters import parse_order_by
from metatrail.schemas.errors import FilterError


@dataclass(frozen=True)
class SortKey:
    expr: Any
    descending: bool
    is_time: bool = False


def sort_keys(entity: Entity, order_by: str | None, dialect: str) -> list[SortKey]:
    """The sort keys of an ``order_by`` spec (default ``created_at``); a property sorts
    numbers first (by value), then strings."""
    if not order_by:
        return [SortKey(entity.table.c.created_at, False, True)]
    field, desc = parse_order_by(order_by)
    table = entity.table
    head = field[0]
    if len(field) == 1 and head in entity.time_columns:
        return [SortKey(table.c[head], desc, True)]
    if len(field) == 1 and head in entity.string_columns:
        return [SortKey(sp.sort_key(table.c[head], dialect, True), desc)]
    if len(field) == 2 and head in PROPERTY_HEADS and (head != "parameters" or entity is EXECUTION):
        p = entity.props
        base = select().where(p.c.node_id == table.c.id, p.c.is_custom == PROPERTY_HEADS[head], p.c.name == field[1])
        num = base.add_columns(p.c.double_value).scalar_subquery()
        text = base.add_columns(p.c.string_value).scalar_subquery()
        return [SortKey(num, desc), SortKey(sp.sort_key(text, dialect, True), desc)]
    raise FilterError(f"cannot order {entity.kind}s by {'.'.join(field)!r}; expected one of "
                      f"{', '.join(entity.fields)} or properties.<key>")


def apply_order(query: Select[Any], keys: list[SortKey], table: FromClause, dialect: str) -> Select[Any]:
    clauses: list[Any] = []
    for k in keys:
        if sp.is_mysql(dialect):
            clauses.append(case((k.expr.is_(None), 1), else_=0))
            clauses.append(k.expr.desc() if k.descending else k.expr.asc())
        else:
            clauses.append((k.expr.desc() if k.descending else k.expr.asc()).nulls_last())
    clauses.append(table.c.id.asc())
    return query.order_by(*clauses)


def _encode_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return {"t": v.isoformat()}
    if isinstance(v, bytes):
        return {"b": v.decode("utf-8", "surrogateescape")}
    return v


def _decode_value(v: Any) -> Any:
    if isinstance(v, dict) and "t" in v:
        return datetime.fromisoformat(v["t"])
    if isinstance(v, dict) and "b" in v:
        return v["b"]
    return v


def encode_cursor(values: list[Any], last_id: str) -> str:
    raw = json.dumps({"k": [_encode_value(v) for v in values], "id": last_id}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


#: What a bad cursor's error says is expected instead.
_EXPECTED = "expected the next_cursor of the previous page of the same query (same filter and ordering)"


def decode_cursor(cursor: str, keys: Sequence[SortKey]) -> tuple[list[Any], str]:
    """The sort-key values and id a cursor holds, checked against the query's ``keys``
    (see ``_fits``) before any SQL runs. Raises
    ``FilterError`` (``param="cursor"``) on a cursor this query did not produce."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data["k"], list):
            raise TypeError("the key values are not a list")
        values = [_decode_value(v) for v in data["k"]]
        last_id = data["id"]
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, UnicodeDecodeError, RecursionError) as exc:
        raise FilterError(f"{_EXPECTED}; {cursor[:40]!r} is not one", param="cursor") from exc
    if not _storable(last_id) or len(last_id) > 64 or len(values) != len(keys) or not all(map(_fits, keys, values)):
        raise FilterError(f"{_EXPECTED}; this one belongs to another query", param="cursor")
    return values, last_id


def _fits(key: SortKey, value: Any) -> bool:
    """Whether ``value`` is what ``key`` compares with, so that no cursor can make the
    database compare a time with a number, a number with text, or bind text it cannot
    hold: an aware time for a time key, a 64-bit or finite number for a numeric key,
    storable text otherwise, or null."""
    if value is None:
        return True
    if key.is_time:
        return isinstance(value, datetime) and value.tzinfo is not None
    if _is_numeric(key.expr):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    return _storable(value)


_INT64 = 2**63


def _is_numeric(expr: Any) -> bool:
    try:
        return issubclass(expr.type.python_type, (int, float)) and expr.type.python_type is not bool
    except (AttributeError, NotImplementedError):
        return False


def _finite(value: int | float) -> bool:
    if isinstance(value, int):
        return -_INT64 <= value < _INT64
    return value == value and value not in (float("inf"), float("-inf"))


def _storable(text: Any) -> bool:
    if not isinstance(text, str) or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def after(keys: list[SortKey], values: list[Any], last_id: str, table: FromClause) -> ColumnElement[bool]:
    """Rows strictly after (values, last_id) in the order of ``keys`` (NULLs last)."""
    branches: list[ColumnElement[bool]] = []
    equal_so_far: list[ColumnElement[bool]] = []
    for key, value in zip(keys, values):
        if value is None:
            later: ColumnElement[bool] = false()
            same = key.expr.is_(None)
        else:
            beyond = key.expr < value if key.descending else key.expr > value
            later = or_(beyond, key.expr.is_(None))
            same = key.expr == value
        branches.append(and_(*equal_so_far, later))
        equal_so_far.append(same)
    branches.append(and_(*equal_so_far, table.c.id > last_id))
    return or_(*branches)
