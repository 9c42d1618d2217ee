"""Turning bytes from the wire into a validated event, with errors that name the fault."""

from __future__ import annotations

import json
from typing import Any

from pydantic import TypeAdapter, ValidationError

from metatrail.schemas.errors import EventValidationError
from metatrail.schemas.events import EVENT_KINDS, Event
from metatrail.schemas.version import SUPPORTED_SCHEMA_VERSIONS

#: Largest serialized event accepted; larger ones are dead-lettered, never applied.
MAX_EVENT_BYTES = 1_048_576

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(raw: bytes | str | dict[str, Any], *, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Validate one event.

    Raises ``EventValidationError`` whose message says what was wrong: not JSON, too
    large, not an object, an unknown ``schema_version`` or ``kind``, or the first fields
    that fail validation. Never raises anything else for any input.
    """
    if isinstance(raw, (bytes, bytearray, str)):
        size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
        if size > max_bytes:
            raise EventValidationError(f"event is {size} bytes, larger than the limit of {max_bytes}")
        try:  # fast path: pydantic-core parses and validates in one pass
            return _ADAPTER.validate_json(raw)
        except (ValidationError, ValueError):
            pass  # diagnose below, with a message that names the fault
        try:
            data: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventValidationError(f"not valid JSON: {exc}") from exc
    else:
        data = raw
    if not isinstance(data, dict):
        raise EventValidationError(f"an event must be a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version is None:
        raise EventValidationError("missing field 'schema_version'")
    if not isinstance(version, str) or version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(sorted(SUPPORTED_SCHEMA_VERSIONS))
        raise EventValidationError(f"unknown schema_version {version!r} (supported: {supported})")
    kind = data.get("kind")
    if kind is None:
        raise EventValidationError("missing field 'kind'")
    if kind not in EVENT_KINDS:
        raise EventValidationError(f"unknown kind {kind!r} (known: {', '.join(sorted(EVENT_KINDS))})")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise EventValidationError(f"invalid {kind} event: {_describe(exc)}") from exc
    except (ValueError, TypeError, RecursionError) as exc:
        raise EventValidationError(f"invalid {kind} event: {exc}") from exc


def _describe(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"][1:]) or "(event)"
        parts.append(f"field '{loc}': {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def dump_event(event: Event) -> bytes:
    """Serialize an event for the wire (compact JSON, UTF-8)."""
    return event.model_dump_json().encode("utf-8")
