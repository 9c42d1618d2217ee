"""A node's properties as one JSON text (the ``properties_doc`` column of node rows).

The typed property tables are the truth and what filters use (indexed, portable). The
document repeats them for reading: queries that return thousands of nodes parse one text
per node instead of fetching and converting a row per property. Apply writes it in the
same transaction as the rows (``metatrail.consumer.apply.documents``), so the two always agree.

Form: ``[{properties}, {custom_properties}]``, plain values (what the read API returns),
keys sorted, compact separators, UTF-8 text: the same properties give the same text on
every backend and in any apply order. Written by orjson (apply writes a document per node
it touches: the standard library's sorted dump cost ~5% of OpenLineage ingest); what
orjson cannot write as Python's ``json`` would (a non-finite float, which the standard
library writes as NaN / Infinity and orjson as null; a lone surrogate; an integer beyond
64 bits) is written by the standard library, so a document reads back as its rows.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson


def plain_value(value_type: str, int_value: Any, double_value: Any, string_value: Any, bool_value: Any,
                json_value: Any) -> Any:
    """The plain value of one typed property row; ``json_value`` already decoded. A
    float zero is unsigned on every backend (see ``draft_value``)."""
    if value_type == "int":
        return int_value if int_value is not None else int(double_value)
    if value_type == "float":
        if double_value is not None:
            return float(double_value) + 0.0
        return None if json_value is None else float(json_value)  # 'nan', 'inf', '-inf'
    if value_type == "string":
        return string_value
    if value_type == "bool":
        return None if bool_value is None else bool(bool_value)
    return json_value


def draft_value(value_type: str, value: Any) -> Any:
    """The plain value of a property an event sets, as ``plain_value`` reads it back
    from the row apply writes for it: a float's zero is unsigned, since MariaDB stores
    -0.0 as 0.0 (``x + 0.0`` turns -0.0 into 0.0 and keeps every other float)."""
    return value + 0.0 if value_type == "float" else value


def encode(properties: Mapping[str, Any], custom_properties: Mapping[str, Any]) -> str | None:
    """The stored text for these properties; None when there are none."""
    if not properties and not custom_properties:
        return None
    document = [properties, custom_properties]
    # Only a float property's own value can be non-finite: json values hold finite numbers.
    if all(type(v) is not float or math.isfinite(v) for half in document for v in half.values()):
        try:
            return orjson.dumps(document, option=orjson.OPT_SORT_KEYS).decode()
        except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits
            pass
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def decode_many(texts: Iterable[str | None]) -> list[Any]:
    """``[properties, custom_properties]`` per stored text, fresh dicts each, parsed in
    one call (one parse of the joined texts costs a third of a parse per text)."""
    joined = ",".join([t or "[{},{}]" for t in texts])
    return json.loads("[" + joined + "]")  # type: ignore[no-any-return]
