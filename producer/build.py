"""Fast construction and serialization of ``metatrail.schemas.events`` models.

For the events the SDK writes as models (contexts, steps, Keras metrics; the events of a
tracked call skip models altogether, see ``metatrail.producer.wire``). The SDK builds events from
values it has already typed itself (UUIDs, aware datetimes, ``PropertyValue``\\ s), so it
skips pydantic's validation, which costs ~20 µs per event here, and fills the model's
fields directly; serialization still goes through the model's own (Rust) serializer, so
the bytes are exactly what ``metatrail.schemas.dump_event`` would write.
In strict mode (tests) every event is re-validated with ``metatrail.schemas.parse_event`` before it
is spooled, so a field the SDK fills wrongly fails loudly there.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any, TypeVar

from pydantic import BaseModel

from metatrail.schemas.construct import defaults, fill, make  # noqa: F401 (make: the SDK builds nested models with it)
from metatrail.schemas.events import EVENT_MODELS, ProducerInfo
from metatrail.schemas.ids import new_id

E = TypeVar("E", bound=BaseModel)

_UTC = timezone.utc
_PRODUCER: list[ProducerInfo] = []


def producer_info() -> ProducerInfo:
    """This process's ``ProducerInfo`` (cached; ``reset_after_fork`` clears it in a child)."""
    if not _PRODUCER:
        _PRODUCER.append(ProducerInfo.current())
    return _PRODUCER[0]


def reset_after_fork() -> None:
    """In a forked child: forget the parent's ``ProducerInfo`` (its pid). Registered as
    this module's at-fork hook."""
    _PRODUCER.clear()
    _LAST_KEY[0] = (None, "")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_after_fork)


def build(cls: type[E], occurred_at: datetime | None = None, **values: Any) -> E:
    """An event of model ``cls`` holding ``values`` (unvalidated, see module doc).

    Envelope fields not given are filled: a new ``event_id``, ``occurred_at`` now (pass one
    to share it between the events of one call), this process's ``producer``, the schema
    version and ``kind``.
    """
    static, fresh = defaults(cls)
    data = static.copy()
    for name, factory in fresh:
        if name not in values:
            data[name] = factory()
    data["event_id"] = new_id()
    data["occurred_at"] = occurred_at or datetime.now(_UTC)
    data["producer"] = _PRODUCER[0] if _PRODUCER else producer_info()
    data.update(values)
    return fill(cls, data, set(values))


def serialize(event: BaseModel) -> bytes:
    """The event's wire bytes (compact JSON, UTF-8), as ``metatrail.schemas.dump_event`` writes them."""
    return type(event).__pydantic_serializer__.to_json(event)


_KEYS: dict[Any, str] = {}
#: (run id object, its key) of the previous event, read and written as one tuple.
_LAST_KEY: list[tuple[Any, str]] = [(None, "")]
_ID_PREFIX = b'{"event_id":"'


def partition_key(event: BaseModel) -> str:
    """Kafka key: the root run id, else the execution/context/artifact id, else the event id."""
    values = event.__dict__
    run_id = values.get("run_id")
    if run_id is not None:
        last = _LAST_KEY[0]
        if last[0] is run_id:  # the same run as the previous event: no hashing
            return last[1]
        key = _KEYS.get(run_id)
        if key is None:
            if len(_KEYS) > 10_000:
                _KEYS.clear()
            key = _KEYS[run_id] = str(run_id)
        _LAST_KEY[0] = (run_id, key)
        return key
    for field in ("execution_id", "context_id", "artifact_id"):
        value = values.get(field)
        if value is not None:
            return str(value)
    return str(values["event_id"])


def record(event: BaseModel) -> tuple[str, str, bytes]:
    """(event id, partition key, wire bytes): what the spool stores for an event."""
    payload = type(event).__pydantic_serializer__.to_json(event)
    if payload.startswith(_ID_PREFIX):  # the id is the first field: no UUID formatting
        event_id = payload[13:49].decode("ascii")
    else:
        event_id = str(event.__dict__["event_id"])
    return event_id, partition_key(event), payload


def known_kinds() -> frozenset[str]:
    """Every kind ``build`` can make (all of this schema version)."""
    return frozenset(EVENT_MODELS)
