"""Keep each node's property document (``properties_doc``) equal to its property rows.

Computed once per node kind before the batch's nodes are written, inside the same
transaction and under the same node locks, and written in the node row itself. It comes
from the final state the merge arrives at (the stored rows of nodes that existed,
overridden by the drafts that win), never from the order events came in, so it is as
order-insensitive and idempotent as the rows themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from metatrail.consumer.apply.merge import property_wins
from metatrail.consumer.apply.plan import PropertyDraft
from metatrail.consumer.store.property_document import draft_value, encode, plain_value

PropertyKey = tuple[str, bool, str]


def node_documents(
    stored: Mapping[PropertyKey, Mapping[str, Any]], drafts: Mapping[PropertyKey, PropertyDraft]
) -> dict[str, str | None]:
    """node id -> document text, for every node the drafts touch."""
    values: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for (node_id, is_custom, name), row in stored.items():
        halves = values.setdefault(node_id, ({}, {}))
        halves[1 if is_custom else 0][name] = plain_value(
            row["value_type"], row["int_value"], row["double_value"], row["string_value"], row["bool_value"],
            row["json_value"])
    for key, draft in drafts.items():
        node_id, is_custom, name = key
        halves = values.setdefault(node_id, ({}, {}))
        row = stored.get(key)
        if row is None or property_wins(draft, row):
            halves[1 if is_custom else 0][name] = draft_value(draft.value.type, draft.value.value)
    return {node_id: encode(*halves) for node_id, halves in values.items()}
