"""Facets as properties: each facet is one JSON property named after it.

A facet is stored as the event sent it (``_producer`` and ``_schemaURL`` included). One
whose canonical JSON is larger than the cap (``spark.logicalPlan`` can be megabytes) is
replaced by a marker that says so::

    {"metatrail_truncated": true, "bytes": 4194304, "sha256": "...", "head": "<first 1 KiB>"}

A facet sent with ``"_deleted": true`` becomes a JSON ``null``. Like every property, a
facet is merged last-writer-wins on (eventTime, event id): a facet of the same name in a
later event replaces the earlier one, whatever order they arrive in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from metatrail.consumer.openlineage.naming import canonical_json
from metatrail.consumer.openlineage.secrets import FLAG, Redactor
from metatrail.schemas.construct import fill
from metatrail.schemas.values import PropertyValue

#: Default cap on one facet's canonical JSON, in bytes.
DEFAULT_MAX_FACET_BYTES = 64 * 1024
#: Characters of a capped facet's JSON text kept in its marker.
HEAD_CHARS = 1024
#: Longest property name; a facet with a longer name is stored under a cut name.
_MAX_NAME = 128


def json_value(value: Any) -> PropertyValue:
    """A JSON property value built without validating it: only for values taken from an
    event parsed as strict JSON (no NaN or Infinity) whose canonical JSON was written (the
    mapping computes its digest first), which are JSON by construction. A facet is one of
    these, and there are several per event at Kafka rates (the contract's check of a JSON
    value is a full walk of it). The tests check that every mapped event passes the
    contract's validation all the same."""
    return fill(PropertyValue, {"type": "json", "value": value}, {"type", "value"})


def facet_value(facet: Any, max_bytes: int | None) -> PropertyValue:
    """One facet as a JSON property value, capped at ``max_bytes`` (see module doc);
    ``None``: the caller knows the whole event is under the cap."""
    if isinstance(facet, dict) and facet.get("_deleted") is True:
        return json_value(None)
    if max_bytes is None:
        return json_value(facet)
    text = canonical_json(facet)
    size = len(text)
    if size <= max_bytes:
        return json_value(facet)
    marker = {
        "metatrail_truncated": True,
        "bytes": size,
        "sha256": hashlib.sha256(text).hexdigest(),
        "head": text[:HEAD_CHARS].decode("utf-8", "ignore"),
    }
    return json_value(marker)


def facet_properties(
    facets: Mapping[str, Any] | None, max_bytes: int | None, *, skip: frozenset[str] = frozenset(), prefix: str = "",
    redactor: Redactor | None = None, redacted: list[str] | None = None,
) -> dict[str, PropertyValue]:
    """``{prefix + facet name: value}`` for every facet not in ``skip``; with a
    ``redactor``, secrets replaced (their names appended to ``redacted``)."""
    out: dict[str, PropertyValue] = {}
    for name, facet in (facets or {}).items():
        if name in skip:
            continue
        key = (prefix + name)[:_MAX_NAME]
        if redactor is not None and redacted is not None:
            facet = redactor.value(key, facet, redacted)
        out[key] = facet_value(facet, max_bytes)
    return out


def redacted_flag(names: list[str]) -> dict[str, PropertyValue]:
    """The ``redacted`` custom property listing ``names`` (nothing when there are none)."""
    return {FLAG: json_value(sorted(set(names)))} if names else {}


def is_truncated(value: Any) -> bool:
    """Whether a stored facet is a cap marker rather than the facet."""
    return isinstance(value, dict) and value.get("metatrail_truncated") is True
