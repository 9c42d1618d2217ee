"""Reading an OpenLineage event's fields, with errors that name the field."""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from metatrail.schemas.errors import EventValidationError
from metatrail.schemas.values import PropertyValue


def text(obj: Any, key: str, where: str) -> str:
    """``obj[key]``, a non-empty string; raises ``EventValidationError`` naming ``where.key``."""
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        raise EventValidationError(f"missing {where}.{key}" if value is None else f"{where}.{key} must be a non-empty string")
    return value


def object_at(obj: Any, key: str, where: str) -> dict[str, Any]:
    """``obj[key]``, an object (``{}`` when absent); raises ``EventValidationError``."""
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventValidationError(f"{where}.{key} must be an object, got {type(value).__name__}")
    return value


def event_time(data: dict[str, Any]) -> datetime:
    """``eventTime`` in UTC (a naive time is UTC); raises ``EventValidationError``."""
    raw = data.get("eventTime")
    if not isinstance(raw, str):
        raise EventValidationError("missing eventTime" if raw is None else "eventTime must be a string")
    try:
        when = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise EventValidationError(f"eventTime {raw[:64]!r} is not an ISO 8601 date-time") from exc
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


@lru_cache(maxsize=1 << 14)
def string_value(value: str) -> PropertyValue:
    """A string property value; cached, since events repeat the same names (immutable)."""
    return PropertyValue(type="string", value=value)
