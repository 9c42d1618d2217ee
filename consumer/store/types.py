"""Column types that behave the same on SQLite, PostgreSQL and MySQL/MariaDB."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import DateTime, LargeBinary, String, Text
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

#: Width of every node id column: a UUID in canonical text form.
ID_LEN = 36


def binary_collation(dialect: Dialect) -> str:
    """The collation of every metatrail table on MySQL/MariaDB: utf8mb4 compared byte by
    byte, with NO PAD, so names and values that differ only by case, accents or trailing
    spaces (``Model``/``model``, ``resume``/``résumé``, ``lr``/``lr ``) are different keys
    and never equal in a filter, as on SQLite and PostgreSQL. (``utf8mb4_bin`` is not
    enough: it is PAD SPACE, so ``'lr' = 'lr '`` holds.) MariaDB spells it
    ``utf8mb4_nopad_bin``; MySQL 8 ``utf8mb4_0900_bin``."""
    if getattr(dialect, "is_mariadb", False):
        return "utf8mb4_nopad_bin"
    version = getattr(dialect, "server_version_info", None) or (8, 0, 17)
    return "utf8mb4_0900_bin" if tuple(version) >= (8, 0, 17) else "utf8mb4_bin"


def IdColumnType() -> String:  # noqa: N802 - reads like a type at the call sites
    return String(ID_LEN)


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as naive UTC with microseconds (MySQL DATETIME(6)); read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc)


class JSONText(TypeDecorator[Any]):
    """JSON kept as canonical text (sorted keys), so dumps compare across backends."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.LONGTEXT())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(value)


def LongText() -> Text:  # noqa: N802
    """Unbounded text (MySQL TEXT stops at 64 KiB)."""
    return Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")


def LongBinary() -> LargeBinary:  # noqa: N802
    """Unbounded bytes (MySQL BLOB stops at 64 KiB)."""
    return LargeBinary().with_variant(mysql.LONGBLOB(), "mysql", "mariadb")
