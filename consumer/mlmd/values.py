"""MLMD property values as metatrail typed values, without the ml-metadata library.

A property row of an MLMD store sets one value column: ``int_value``, ``double_value``,
``string_value``, ``bool_value`` (schema 10) or ``proto_value`` (schema 10;
``byte_value`` before it). Two kinds hide inside: a struct is stored as the string
``mlmd-struct::`` + base64 of a serialized ``google.protobuf.Struct`` (decoded here to
JSON), and a proto is a serialized ``google.protobuf.Any`` (kept as its type URL and its
bytes in base64, since decoding it needs the message's schema). A row with every column
NULL becomes a JSON null.

The protobuf wire format needed for Struct and Any is small (varints, 64-bit doubles,
length-delimited fields), so it is decoded here rather than through the ``protobuf``
package, which the ml-metadata library pins to an old major version.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Iterator
from typing import Any

from metatrail.schemas.construct import make
from metatrail.schemas.values import INT_MAX, INT_MIN, PropertyValue

STRUCT_PREFIX = "mlmd-struct::"
#: Nesting accepted in a Struct (protobuf's own default recursion limit).
MAX_DEPTH = 100


class WireError(ValueError):
    """Bytes that are not the protobuf message they should be."""


def property_value(int_value: Any, double_value: Any, string_value: Any, bool_value: Any,
                   proto_value: Any, byte_value: Any) -> PropertyValue:
    """The typed value of one MLMD property row (columns a schema lacks given as None).

    Built without validation (``make``): every branch gives the type its tag says (an
    int in the 64-bit range, a float, a str, a bool, JSON data without NaN)."""
    if int_value is not None:
        value = int(int_value)
        if INT_MIN <= value <= INT_MAX:
            return make(PropertyValue, type="int", value=value)
        return make(PropertyValue, type="string", value=str(value))
    if double_value is not None:
        return make(PropertyValue, type="float", value=float(double_value))
    if string_value is not None:
        text = string_value.decode("utf-8", "replace") if isinstance(string_value, bytes) else str(string_value)
        if text.startswith(STRUCT_PREFIX):
            try:
                return make(PropertyValue, type="json", value=decode_struct(_unbase64(text[len(STRUCT_PREFIX):])))
            except (WireError, UnicodeDecodeError):
                pass  # not a struct after all: keep the text as it is
        return make(PropertyValue, type="string", value=text)
    if bool_value is not None:
        return make(PropertyValue, type="bool", value=bool(bool_value))
    if proto_value is not None:
        return make(PropertyValue, type="json", value=decode_any(proto_value))
    if byte_value is not None:
        raw = byte_value.encode("latin-1") if isinstance(byte_value, str) else bytes(byte_value)
        return make(PropertyValue, type="json", value={"bytes": base64.b64encode(raw).decode("ascii")})
    return make(PropertyValue, type="json", value=None)


def decode_any(stored: Any) -> dict[str, str]:
    """``{"type_url": ..., "value": <base64 of the packed message>}`` of a stored Any.

    SQLite stores of MLMD keep the serialized Any in base64 text, MySQL ones as bytes."""
    candidates: list[bytes] = []
    if isinstance(stored, str):
        candidates.append(_unbase64_or_none(stored) or stored.encode("latin-1"))
    else:
        raw = bytes(stored)
        candidates.append(raw)
        decoded = _unbase64_or_none(raw.decode("latin-1"))
        if decoded is not None:
            candidates.append(decoded)
    for data in candidates:
        try:
            fields = dict(_fields(data))
            type_url = fields.get(1, b"")
            value = fields.get(2, b"")
            if isinstance(type_url, bytes) and isinstance(value, bytes) and set(fields) <= {1, 2}:
                return {"type_url": type_url.decode("utf-8"), "value": base64.b64encode(value).decode("ascii")}
        except (WireError, UnicodeDecodeError):
            continue
    return {"type_url": "", "value": base64.b64encode(candidates[0]).decode("ascii")}


def decode_struct(data: bytes, depth: int = 0) -> dict[str, Any]:
    """A serialized ``google.protobuf.Struct`` as a JSON object. Raises ``WireError``."""
    if depth > MAX_DEPTH:
        raise WireError("struct nested too deeply")
    out: dict[str, Any] = {}
    for number, entry in _fields(data):
        if number != 1 or not isinstance(entry, bytes):
            raise WireError(f"unexpected field {number} in a Struct")
        key, value = "", None
        for n, v in _fields(entry):
            if n == 1 and isinstance(v, bytes):
                key = v.decode("utf-8")
            elif n == 2 and isinstance(v, bytes):
                value = _decode_value(v, depth + 1)
            else:
                raise WireError(f"unexpected field {n} in a Struct entry")
        out[key] = value
    return out


def _decode_value(data: bytes, depth: int) -> Any:
    """A serialized ``google.protobuf.Value``: null, number, string, bool, struct or list."""
    value: Any = None
    for number, v in _fields(data):
        if number == 1:
            value = None
        elif number == 2 and isinstance(v, float):
            value = int(v) if v.is_integer() and abs(v) < 2**53 else v
            if isinstance(value, float) and not math.isfinite(value):
                value = repr(value)  # JSON holds no NaN or infinity
        elif number == 3 and isinstance(v, bytes):
            value = v.decode("utf-8")
        elif number == 4 and isinstance(v, int):
            value = bool(v)
        elif number == 5 and isinstance(v, bytes):
            value = decode_struct(v, depth + 1)
        elif number == 6 and isinstance(v, bytes):
            value = [_decode_value(item, depth + 1) for n, item in _fields(v) if n == 1 and isinstance(item, bytes)]
        else:
            raise WireError(f"unexpected field {number} in a Value")
    return value


def _fields(data: bytes) -> Iterator[tuple[int, int | float | bytes]]:
    """(field number, value) of every field: varints as ints, 64-bit fields as doubles,
    length-delimited ones as bytes. Raises ``WireError`` on anything malformed."""
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            yield number, value
        elif wire == 1:
            if pos + 8 > end:
                raise WireError("truncated 64-bit field")
            yield number, struct.unpack_from("<d", data, pos)[0]
            pos += 8
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > end:
                raise WireError("truncated length-delimited field")
            yield number, data[pos:pos + size]
            pos += size
        elif wire == 5:
            if pos + 4 > end:
                raise WireError("truncated 32-bit field")
            yield number, struct.unpack_from("<f", data, pos)[0]
            pos += 4
        else:
            raise WireError(f"unsupported wire type {wire}")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise WireError("truncated or overlong varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _unbase64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WireError(f"not base64: {exc}") from exc


def _unbase64_or_none(text: str) -> bytes | None:
    try:
        return _unbase64(text)
    except WireError:
        return None
