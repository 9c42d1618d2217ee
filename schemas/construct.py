"""Models built from values their builder has already typed, without pydantic's validation.

Validation costs ~20 µs per event; code that makes events from values it typed itself
(the SDK from a call's arguments, an importer from a store's typed columns, checked for
the contract's limits first) fills the model's fields directly. Serialization still goes
through the model's own serializer, and tests re-validate what these builders make
(``parse_event(dump_event(event)) == event``), so a field filled wrongly fails there.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

M = TypeVar("M", bound=BaseModel)

#: model -> (static defaults of every field in declaration order, fields whose default is a
#: fresh list or dict)
_DEFAULTS: dict[type[BaseModel], tuple[dict[str, Any], tuple[tuple[str, type], ...]]] = {}
_new = object.__new__
_set = object.__setattr__


def defaults(cls: type[BaseModel]) -> tuple[dict[str, Any], tuple[tuple[str, type], ...]]:
    """(every field's static default, in declaration order — the JSON order —, the fields
    whose default is a fresh list or dict)."""
    cached = _DEFAULTS.get(cls)
    if cached is None:
        static: dict[str, Any] = {}
        fresh: list[tuple[str, type]] = []
        for name, info in cls.model_fields.items():
            static[name] = None if info.default is PydanticUndefined else info.default
            if info.default_factory in (list, dict):
                fresh.append((name, info.default_factory))
        cached = (static, tuple(fresh))
        _DEFAULTS[cls] = cached
    return cached


def fill(cls: type[M], data: dict[str, Any], given: set[str]) -> M:
    """A model whose ``__dict__`` is ``data`` (every field), ``given`` the fields set."""
    model = _new(cls)
    _set(model, "__dict__", data)
    _set(model, "__pydantic_fields_set__", given)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_private__", None)
    return model


def make(cls: type[M], **values: Any) -> M:
    """A model from ALL of its field values, unvalidated (nested models, mostly)."""
    return fill(cls, values, set(values))


def construct(cls: type[M], **values: Any) -> M:
    """A model from some of its field values, the others at their defaults, unvalidated."""
    static, fresh = _DEFAULTS.get(cls) or defaults(cls)
    data = static.copy()
    for name, factory in fresh:
        if name not in values:
            data[name] = factory()
    data.update(values)
    return fill(cls, data, set(values))
