"""MLMD property values decoded without ml-metadata: structs, protos, bytes, NULLs; the
protobuf wire decoder against protobuf's own encoder, and on damaged bytes."""

from __future__ import annotations

import base64
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metatrail.consumer.mlmd.values import STRUCT_PREFIX, WireError, decode_any, decode_struct, property_value
from metatrail.schemas import PropertyValue

struct_pb2 = pytest.importorskip("google.protobuf.struct_pb2")
any_pb2 = pytest.importorskip("google.protobuf.any_pb2")

json_leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40),
                        st.floats(allow_nan=False, allow_infinity=False, width=64), st.text(max_size=20))
json_values = st.recursive(json_leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=20)


def _same(ours: Any, theirs: Any) -> bool:
    """JSON equality with numbers compared as numbers (Struct keeps doubles only)."""
    if isinstance(ours, dict):
        return isinstance(theirs, dict) and ours.keys() == theirs.keys() and all(_same(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, list):
        return isinstance(theirs, list) and len(ours) == len(theirs) and all(map(_same, ours, theirs))
    if isinstance(ours, (int, float)) and not isinstance(ours, bool):
        return isinstance(theirs, (int, float)) and not isinstance(theirs, bool) and math.isclose(ours, theirs)
    return bool(ours == theirs)


@settings(max_examples=300)
@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_structs_decode_as_protobuf_encodes_them(data: dict[str, Any]) -> None:
    message = struct_pb2.Struct()
    message.update(data)
    decoded = decode_struct(message.SerializeToString())
    assert _same(decoded, data)
    text = STRUCT_PREFIX + base64.b64encode(message.SerializeToString()).decode()
    value = property_value(None, None, text, None, None, None)
    assert value.type == "json" and _same(value.value, data)
    PropertyValue.model_validate(value.model_dump())  # what the converter builds is a valid value


def test_any_keeps_its_type_url_and_bytes_from_text_and_from_bytes() -> None:
    packed = any_pb2.Any()
    packed.Pack(struct_pb2.Value(string_value="blessed"))
    raw = packed.SerializeToString()
    expected = {"type_url": "type.googleapis.com/google.protobuf.Value", "value": base64.b64encode(packed.value).decode()}
    assert decode_any(base64.b64encode(raw).decode()) == expected  # SQLite stores: base64 text
    assert decode_any(raw) == expected  # MySQL/PostgreSQL stores: the bytes
    assert decode_any(b"\xff\xfe not a message") == {"type_url": "", "value": base64.b64encode(b"\xff\xfe not a message").decode()}


@pytest.mark.parametrize("row,expected", [
    ((5, None, None, None, None, None), ("int", 5)),
    ((2**63, None, None, None, None, None), ("string", str(2**63))),
    ((None, 0.5, None, None, None, None), ("float", 0.5)),
    ((None, None, "text", None, None, None), ("string", "text")),
    ((None, None, STRUCT_PREFIX + "!!not base64", None, None, None), ("string", STRUCT_PREFIX + "!!not base64")),
    ((None, None, STRUCT_PREFIX + base64.b64encode(b"\x0a\x05\x0a\x01").decode(), None, None, None),
     ("string", STRUCT_PREFIX + base64.b64encode(b"\x0a\x05\x0a\x01").decode())),  # truncated message
    ((None, None, None, 1, None, None), ("bool", True)),
    ((None, None, None, None, None, b"\x00\x01"), ("json", {"bytes": "AAE="})),
    ((None, None, None, None, None, None), ("json", None)),
])
def test_each_column_gives_its_type(row: tuple[Any, ...], expected: tuple[str, Any]) -> None:
    value = property_value(*row)
    assert (value.type, value.value) == expected
    PropertyValue.model_validate(value.model_dump())


@pytest.mark.parametrize("data", [b"\x0a", b"\x0a\x10abc", b"\x08", b"\x0b", b"\x12\x03\x0a\x01a"])
def test_damaged_structs_raise_wire_errors(data: bytes) -> None:
    with pytest.raises(WireError):
        decode_struct(data)
