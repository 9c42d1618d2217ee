"""Keep each node's property document (``properties_doc``) equal to its property rows.

Called once per node kind after the batch's property rows are merged, inside the same
transaction and under the same node locks. The document is computed from the final
state the merge arrives at (the stored rows of nodes that existed, overridden by the
drafts that win), never from the order events came in, so it is as order-insensitive
and idempotent as the rows themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from consumer.apply.merge import property_wins
from consumer.apply.plan import PropertyDraft
from consumer.store.property_document import draft_value, encode, plain_value

PropertyKey = tuple[str, bool, str]
#: Nodes per UPDATE statement on the backends that pay a round trip per statement.
CHUNK = 500


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


def write_property_documents(
    session: Session,
    node_table: Table,
    stored: Mapping[PropertyKey, Mapping[str, Any]],
    drafts: Mapping[PropertyKey, PropertyDraft],
) -> None:
    """Store the document of every node the drafts touch."""
    documents = node_documents(stored, drafts)
    if not documents:
        return
    pairs = sorted(documents.items())
    connection = session.connection()
    table = node_table.name
    if connection.dialect.name == "sqlite":  # no round trips to save: one prepared statement
        connection.exec_driver_sql(f"UPDATE {table} SET properties_doc = ? WHERE id = ?",
                                   [(doc, node_id) for node_id, doc in pairs])
        return
    for start in range(0, len(pairs), CHUNK):
        part = pairs[start : start + CHUNK]
        cases = " ".join(["WHEN %s THEN %s"] * len(part))
        ids = ", ".join(["%s"] * len(part))
        params = [v for pair in part for v in pair] + [node_id for node_id, _ in part]
        connection.exec_driver_sql(
            f"UPDATE {table} SET properties_doc = CASE id {cases} END WHERE id IN ({ids})", tuple(params))
