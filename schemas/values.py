"""Typed property values: the one place a Python value becomes a typed, portable value.

A property is ``{"type": "int"|"float"|"string"|"bool"|"json", "value": ...}``. The tag
travels with the value so that ``1`` and ``1.0`` and ``true`` stay distinct for producers
in any language, and so that the store can put each in its own indexed column.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

PropertyType: TypeAlias = Literal["int", "float", "string", "bool", "json"]

#: Largest integer a property may hold (signed 64 bit, what every backend stores).
INT_MAX = 2**63 - 1
INT_MIN = -(2**63)
#: Deepest nesting of lists and objects in a ``json`` value (and in an event's JSON). Deeper
#: values are refused with a clear error instead of exhausting Python's stack somewhere later.
MAX_JSON_DEPTH = 64


def json_value_problem(value: Any, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``value`` cannot be a ``json`` property value, or ``None`` when it can.

    Walks the value without recursion (a 10,000-deep list costs a loop, not the stack):
    only dicts with string (or number) keys, lists/tuples, strings, finite numbers,
    booleans and None, nested at most ``max_depth`` levels."""
    if not isinstance(value, (dict, list, tuple)):
        return _scalar_problem(value)
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            return f"nested deeper than {max_depth} levels"
        if isinstance(item, dict):
            if not all(k is None or isinstance(k, (str, int, float)) for k in item):
                return "object keys must be strings or numbers"
            children: Any = item.values()
        else:
            children = item
        for child in children:
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1))
            elif not isinstance(child, (str, int)) or isinstance(child, float):
                problem = _scalar_problem(child)
                if problem is not None:
                    return problem
    return None


def _scalar_problem(value: Any) -> str | None:
    if value is None or isinstance(value, (str, int, bool)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    return f"a {type(value).__name__} is not JSON"


class PropertyValue(BaseModel):
    """One typed value. Build it from Python with :meth:`of`."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")

    type: PropertyType
    value: Any

    @model_validator(mode="after")
    def _value_matches_type(self) -> PropertyValue:
        v = self.value
        ok: bool
        if self.type == "int":
            ok = isinstance(v, int) and not isinstance(v, bool) and INT_MIN <= v <= INT_MAX
        elif self.type == "float":
            if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
                object.__setattr__(self, "value", float(v.lower().replace("infinity", "inf")))
                ok = True
            else:
                ok = isinstance(v, (int, float)) and not isinstance(v, bool)
                if ok:
                    try:  # an integer literal beyond float range (``1e400`` written out)
                        object.__setattr__(self, "value", float(v))
                    except OverflowError:
                        raise ValueError(
                            f"an integer of {v.bit_length()} bits is beyond the range of a float property"
                        ) from None
        elif self.type == "string":
            ok = isinstance(v, str)
        elif self.type == "bool":
            ok = isinstance(v, bool)
        else:
            problem = json_value_problem(v)
            if problem is not None:
                raise ValueError(f"not a valid 'json' property value: {problem}")
            ok = True
        if not ok:
            shown = repr(v) if len(repr(v)) <= 80 else repr(v)[:80] + "..."
            raise ValueError(f"value {shown} is not a valid {self.type!r} property value")
        return self

    @classmethod
    def of(cls, value: Any) -> PropertyValue:
        """Type a Python value: bool, int, float and str keep their type; lists, dicts and
        None become ``json``. Raises ``ValueError`` for values JSON cannot hold."""
        if isinstance(value, PropertyValue):
            return value
        if isinstance(value, bool):
            return cls(type="bool", value=value)
        if isinstance(value, int):
            if INT_MIN <= value <= INT_MAX:
                return cls(type="int", value=value)
            return cls(type="string", value=str(value))
        if isinstance(value, float):
            return cls(type="float", value=value)
        if isinstance(value, str):
            return cls(type="string", value=value)
        return cls(type="json", value=value)

    def python(self) -> Any:
        """The plain Python value."""
        return self.value

    def is_finite(self) -> bool:
        return not (self.type == "float" and not math.isfinite(self.value))


#: A property name: what the store's name column holds.
PropertyName = Annotated[str, Field(min_length=1, max_length=128)]
#: A node's properties: name -> typed value.
Properties: TypeAlias = dict[PropertyName, PropertyValue]


def typed(values: dict[str, Any] | None) -> Properties:
    """Type every value of a plain dict (see :meth:`PropertyValue.of`).

    Raises ``ValueError`` naming the first property whose value cannot be typed (not JSON,
    nested deeper than ``MAX_JSON_DEPTH``...); never ``RecursionError``."""
    out: Properties = {}
    for k, v in (values or {}).items():
        try:
            out[str(k)] = PropertyValue.of(v)
        except ValueError as exc:
            raise ValueError(f"property {str(k)!r}: {_reason(exc)}") from None
    return out


def _reason(exc: ValueError) -> str:
    """The message of a ``ValueError`` raised by the validator, without pydantic's wrapping."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return str(first["msg"]).removeprefix("Value error, ")
    return str(exc)
