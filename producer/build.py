"""Fast construction and serialization of ``schemas.events`` models on the hot path.

The SDK builds events from values it has already typed itself (UUIDs, aware datetimes,
``PropertyValue``\\ s), so it skips pydantic's validation, which costs ~20 µs per event
here, and fills the model's fields directly; serialization still goes through the model's
own (Rust) serializer, so the bytes are exactly what ``schemas.dump_event`` would write.
In strict mode (tests) every event is re-validated with ``schemas.parse_event`` before it
is spooled, so a field the SDK fills wrongly fails loudly there.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from schemas.events import EVENT_MODELS, ProducerInfo
from schemas.ids import new_id
from schemas.version import SCHEMA_VERSION

E = TypeVar("E", bound=BaseModel)

_UTC = timezone.utc
#: model -> (static defaults, names of fields whose default is a fresh list/dict)
_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], tuple[tuple[str, type], ...]]] = {}


def _defaults(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[tuple[str, type], ...]]:
    cached = _DEFAULTS.get(cls)
    if cached is None:
        static: dict[str, Any] = {}  # every field, in declaration order (the JSON order)
        fresh: list[tuple[str, type]] = []
        for name, field in cls.model_fields.items():
            static[name] = None if field.default is PydanticUndefined else field.default
            if field.default_factory in (list, dict):
                fresh.append((name, field.default_factory))  # type: ignore[arg-type]
        cached = (static, tuple(fresh))
        _DEFAULTS[cls] = cached
    return cached


def build(cls: type[E], **values: Any) -> E:
    """An event of model ``cls`` holding ``values`` (unvalidated, see module doc).

    Envelope fields not given are filled: a new ``event_id``, ``occurred_at`` now, this
    process's ``producer``, the schema version and ``kind``.
    """
    static, fresh = _defaults(cls)
    data = dict(static)
    for name, factory in fresh:
        if name not in values:
            data[name] = factory()
    data["event_id"] = new_id()
    data["occurred_at"] = datetime.now(_UTC)
    data["producer"] = ProducerInfo.current()
    data["schema_version"] = SCHEMA_VERSION
    data.update(values)
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", data)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model


def serialize(event: BaseModel) -> bytes:
    """The event's wire bytes (compact JSON, UTF-8), as ``schemas.dump_event`` writes them."""
    return type(event).__pydantic_serializer__.to_json(event)


_KEYS: dict[Any, str] = {}
_ID_PREFIX = b'{"event_id":"'


def partition_key(event: BaseModel) -> str:
    """Kafka key: the root run id, else the execution/context/artifact id, else the event id."""
    values = event.__dict__
    run_id = values.get("run_id")
    if run_id is not None:
        key = _KEYS.get(run_id)
        if key is None:
            if len(_KEYS) > 10_000:
                _KEYS.clear()
            key = _KEYS[run_id] = str(run_id)
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


def make(cls: type[E], **values: Any) -> E:
    """A nested (non-envelope) model from ALL of its field values, unvalidated."""
    model = cls.__new__(cls)
    object.__setattr__(model, "__dict__", values)
    object.__setattr__(model, "__pydantic_fields_set__", set(values))
    object.__setattr__(model, "__pydantic_extra__", None)
    object.__setattr__(model, "__pydantic_private__", None)
    return model
