"""JSON bytes that arrive with the value they hold already parsed.

``POST /api/v1/lineage/batch`` parses its body to split it into events, and used to hand
each event on as bytes that the mapping parsed again: a second ``orjson.loads`` of every
event (~25 µs of a ~5 KB one), the largest part of what the HTTP path spent beyond the
Kafka consumer's. A ``ParsedJson`` is still the event's bytes (its digest names a dead
letter, a dead letter stores them, the size limit measures them), and also carries the
value they were dumped from, which the mapping takes instead of parsing them. They are
the value's canonical JSON (keys sorted), which names the event (``naming.event_digest``):
the mapping takes them as that too, instead of dumping the value once more.
"""

from __future__ import annotations

from typing import Any

import orjson


class ParsedJson(bytes):
    """The canonical JSON of ``value`` (``naming.canonical_json``) that keeps ``value``.
    Only for values orjson itself parsed (strict JSON), whose dump parses back to an equal
    value: reading ``value`` is then the same as parsing the bytes."""

    value: Any

    @classmethod
    def of(cls, value: Any) -> ParsedJson:
        """``value``'s canonical JSON, kept beside its bytes. Raises ``TypeError`` for
        what orjson cannot dump (it parsed nothing like it)."""
        parsed = cls(orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
        parsed.value = value
        return parsed


def known_canonical(payload: bytes | str | dict[str, Any]) -> bytes | None:
    """The canonical JSON of the value ``payload`` holds when that is known without
    dumping it (a ``ParsedJson``), else ``None``."""
    return payload if isinstance(payload, ParsedJson) else None


def load_json(payload: bytes | str) -> Any:
    """The value JSON text holds: the one kept beside it when it is a ``ParsedJson``, else
    parsed by orjson (strict JSON: NaN and Infinity are refused). Raises
    ``orjson.JSONDecodeError``."""
    return payload.value if isinstance(payload, ParsedJson) else orjson.loads(payload)
