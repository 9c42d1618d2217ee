"""Typed property values: the one place a Python value becomes a typed, portable value.

A property is ``{"type": "int"|"float"|"string"|"bool"|"json", "value": ...}``. The tag
travels with the value so that ``1`` and ``1.0`` and ``true`` stay distinct for producers
in any language, and so that the store can put each in its own indexed column.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, model_validator

PropertyType: TypeAlias = Literal["int", "float", "string", "bool", "json"]

#: Largest integer a property may hold (signed 64 bit, what every backend stores).
INT_MAX = 2**63 - 1
INT_MIN = -(2**63)


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
                    object.__setattr__(self, "value", float(v))
        elif self.type == "string":
            ok = isinstance(v, str)
        elif self.type == "bool":
            ok = isinstance(v, bool)
        else:
            try:
                json.dumps(v, allow_nan=False)
                ok = True
            except (TypeError, ValueError):
                ok = False
        if not ok:
            raise ValueError(f"value {v!r} is not a valid {self.type!r} property value")
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
    """Type every value of a plain dict (see :meth:`PropertyValue.of`)."""
    return {str(k): PropertyValue.of(v) for k, v in (values or {}).items()}
