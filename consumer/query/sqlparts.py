"""Portable SQL pieces: exact string comparison, case-sensitive LIKE, binary ordering.

The three backends disagree on strings: MariaDB's default collation ignores case and
trailing spaces, SQLite's LIKE ignores ASCII case, PostgreSQL is exact. These helpers give
the same (exact, case-sensitive, code-point ordered) answer everywhere while still letting
the indexed comparison narrow the rows first.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, cast, false, or_
from sqlalchemy.dialects import mysql

from metatrail.schemas.errors import FilterError

MYSQL = ("mysql", "mariadb")


def is_mysql(dialect: str) -> bool:
    return dialect in MYSQL


def _binary(expr: Any) -> Any:
    return cast(expr, mysql.BINARY())


def str_eq(col: Any, value: str, dialect: str) -> ColumnElement[bool]:
    """``col = value``, exact on every backend (index-friendly on MariaDB too)."""
    if is_mysql(dialect):
        return and_(col == value, _binary(col) == value.encode("utf-8"))
    return col == value  # type: ignore[no-any-return]


def str_in(col: Any, values: list[str], dialect: str) -> ColumnElement[bool]:
    if not values:
        return false()
    if is_mysql(dialect):
        return and_(col.in_(values), _binary(col).in_([v.encode("utf-8") for v in values]))
    return col.in_(values)  # type: ignore[no-any-return]


def str_cmp(col: Any, op: str, value: str, dialect: str) -> ColumnElement[bool]:
    """``col <op> value`` by code point (PostgreSQL's C collation, SQLite's binary)."""
    left = _binary(col) if is_mysql(dialect) else col
    right: Any = value.encode("utf-8") if is_mysql(dialect) else value
    return compare_op(left, op, right)


def compare_op(left: Any, op: str, right: Any) -> ColumnElement[bool]:
    if op == "=":
        return left == right  # type: ignore[no-any-return]
    if op == "!=":
        return left != right  # type: ignore[no-any-return]
    if op == "<":
        return left < right  # type: ignore[no-any-return]
    if op == "<=":
        return left <= right  # type: ignore[no-any-return]
    if op == ">":
        return left > right  # type: ignore[no-any-return]
    if op == ">=":
        return left >= right  # type: ignore[no-any-return]
    raise AssertionError(op)


def check_like_pattern(pattern: str, pos: int) -> None:
    """A LIKE pattern: ``%`` any run, ``_`` one character, ``\\`` escapes the next one."""
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            if i + 1 >= len(pattern):
                raise FilterError(f"position {pos}: LIKE pattern ends with an escape character '\\'", pos)
            i += 2
        else:
            i += 1


def _glob_from_like(pattern: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            ch = pattern[i + 1]
            out.append(f"[{ch}]" if ch in "*?[" else ch)
            i += 2
            continue
        if ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        elif ch in "*?[":
            out.append(f"[{ch}]")
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def like(col: Any, pattern: str, dialect: str) -> ColumnElement[bool]:
    """Case-sensitive LIKE with backslash escapes on every backend (GLOB on SQLite)."""
    if dialect == "sqlite":
        return col.op("GLOB", is_comparison=True)(_glob_from_like(pattern))  # type: ignore[no-any-return]
    if is_mysql(dialect):
        return col.collate("utf8mb4_bin").like(pattern, escape="\\")  # type: ignore[no-any-return]
    return col.like(pattern, escape="\\")  # type: ignore[no-any-return]


def sort_key(expr: Any, dialect: str, is_string: bool) -> Any:
    """An ORDER BY expression sorting strings by code point everywhere."""
    if is_string and is_mysql(dialect):
        return expr.collate("utf8mb4_bin")
    return expr


def ors(items: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    return or_(*items) if items else false()
