"""Turning bytes from the wire into a validated event, with errors that name the fault.

``parse_event`` is the contract's one boundary: whatever the input, it returns an event or
raises ``EventValidationError`` with a reason. The checks that cannot be left to pydantic
live here: the size limit, JSON nesting depth (checked without recursing, before anything
recursive reads the input), and text no store can hold (NUL characters, lone surrogates).
Anything else that escapes parsing or validation is turned into the same error, so one bad
message can never stop a consumer.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from metatrail.schemas.errors import EventValidationError
from metatrail.schemas.events import EVENT_KINDS, Event
from metatrail.schemas.values import MAX_JSON_DEPTH
from metatrail.schemas.version import SUPPORTED_SCHEMA_VERSIONS

#: Largest serialized event accepted; larger ones are dead-lettered, never applied.
MAX_EVENT_BYTES = 1_048_576
#: Deepest nesting of arrays and objects in an event's JSON: the envelope's own levels plus
#: a ``json`` property value nested ``MAX_JSON_DEPTH`` deep.
MAX_EVENT_DEPTH = MAX_JSON_DEPTH + 8

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
#: What changes JSON nesting outside strings: brackets, and whole string literals to skip.
_STRUCTURE = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def parse_event(raw: bytes | str | dict[str, Any], *, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Validate one event.

    Raises ``EventValidationError`` whose message says what was wrong: not JSON, too
    large, nested too deep, not an object, an unknown ``schema_version`` or ``kind``, text
    a store cannot hold, or the first fields that fail validation. Never raises anything
    else for any input (an unexpected error becomes an ``EventValidationError`` too).
    """
    try:
        return _parse(raw, max_bytes)
    except EventValidationError:
        raise
    except Exception as exc:  # the boundary: no input may escape as another error
        raise EventValidationError(f"cannot validate the event: {type(exc).__name__}: {exc}") from exc


def _parse(raw: bytes | str | dict[str, Any], max_bytes: int) -> Event:
    if isinstance(raw, (bytes, bytearray, memoryview, str)):
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
        if len(data) > max_bytes:
            raise EventValidationError(f"event is {len(data)} bytes, larger than the limit of {max_bytes}")
        try:  # fast path: pydantic-core parses and validates in one pass
            event = _ADAPTER.validate_json(data)
        except (ValidationError, ValueError):
            event = None  # diagnose below, with a message that names the fault
        if event is not None:
            if b"\\u0000" in data:  # rare: only then walk the text for an escaped NUL
                _check_text(json.loads(data))
            return event
        _check_depth(data)
        try:
            parsed: Any = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise EventValidationError(f"not valid JSON: {exc}") from exc
    else:
        parsed = raw
    if not isinstance(parsed, dict):
        raise EventValidationError(f"an event must be a JSON object, got {type(parsed).__name__}")
    _check_depth_of(parsed)
    _check_envelope(parsed)
    _check_text(parsed)
    kind = parsed["kind"]
    try:
        return _ADAPTER.validate_python(parsed)
    except ValidationError as exc:
        raise EventValidationError(f"invalid {kind} event: {_describe(exc)}") from exc


def _check_envelope(data: dict[str, Any]) -> None:
    version = data.get("schema_version")
    supported = ", ".join(repr(v) for v in sorted(SUPPORTED_SCHEMA_VERSIONS))
    if version is None:
        raise EventValidationError("missing field 'schema_version'")
    if not isinstance(version, str):
        raise EventValidationError(
            f"schema_version must be a string, got {type(version).__name__} {_short(version)} "
            f"(supported: {supported})"
        )
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise EventValidationError(f"unknown schema_version {_short(version)} (supported: {supported})")
    kind = data.get("kind")
    if kind is None:
        raise EventValidationError("missing field 'kind'")
    if kind not in EVENT_KINDS:
        raise EventValidationError(f"unknown kind {_short(kind)} (known: {', '.join(sorted(EVENT_KINDS))})")


def _check_depth(data: bytes) -> None:
    """Refuse JSON text nested deeper than ``MAX_EVENT_DEPTH``, scanning brackets outside
    string literals (no recursion, so 10,000 levels cost a scan, not the stack)."""
    depth = 0
    for match in _STRUCTURE.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_EVENT_DEPTH:
                raise EventValidationError(f"JSON nested deeper than {MAX_EVENT_DEPTH} levels")
        elif token in (b"]", b"}"):
            depth -= 1


def _check_depth_of(data: Any) -> None:
    """The same limit for an already decoded event (a dict handed over in-process)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_EVENT_DEPTH:
                raise EventValidationError(f"JSON nested deeper than {MAX_EVENT_DEPTH} levels")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))


def _check_text(data: Any) -> None:
    """Refuse strings (keys included) that no store can hold: NUL characters (PostgreSQL
    text) and lone surrogates (not encodable as UTF-8)."""
    stack: list[tuple[Any, str]] = [(data, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                path = f"{where}.{key}" if where else str(key)
                _check_string(key, where or "(event)", "a key")
                stack.append((value, path))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))
        elif isinstance(item, str):
            _check_string(item, where, "text")


def _check_string(text: Any, where: str, what: str) -> None:
    if not isinstance(text, str):
        return
    if "\x00" in text:
        raise EventValidationError(f"field '{_clean(where)}': {what} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise EventValidationError(f"field '{_clean(where)}': {what} contains a lone surrogate") from None


def safe_text(text: str, limit: int) -> str:
    """``text`` that every store and header can hold: lone surrogates and NUL characters
    written as escapes (``\\udc80``, ``\\x00``), at most ``limit`` characters (cut ones end
    with ``...``). Used for dead letters' reasons and keys, which must always be writable."""
    clean = str(text).encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return clean if len(clean) <= limit else clean[: max(0, limit - 3)] + "..."


def _clean(text: str, limit: int = 200) -> str:
    return safe_text(text, limit)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _describe(exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        loc = ".".join(str(p) for p in err["loc"][1:]) or "(event)"
        parts.append(f"field '{_clean(loc)}': {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def dump_event(event: Event) -> bytes:
    """Serialize an event for the wire (compact JSON, UTF-8)."""
    return event.model_dump_json().encode("utf-8")
