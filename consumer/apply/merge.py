"""Merge a batch's drafts into stored rows with the same order-insensitive rules."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from metatrail.consumer.apply.plan import NodeDraft, PropertyDraft, property_columns

#: Column values of a node row no event has described yet (a placeholder).
NODE_DEFAULTS: dict[str, dict[str, Any]] = {
    "context": {"type": None, "name": None, "mlmd_id": None, "external_id": None},
    "artifact": {
        "mlmd_id": None,
        "external_id": None,
        "type": None,
        "uri": None,
        "digest": None,
        "name": None,
        "version": None,
        "state": "UNKNOWN",
        "state_reason": None,
    },
    "execution": {
        "mlmd_id": None,
        "external_id": None,
        "type": None,
        "name": None,
        "state": "UNKNOWN",
        "state_rank": 0,
        "started_at": None,
        "ended_at": None,
        "fingerprint": None,
        "trigger_id": None,
        "cached_from": None,
        "code_version": None,
        "environment": None,
        "error_type": None,
        "error_message": None,
        "error_traceback": None,
        "producer_host": None,
        "producer_pid": None,
        "last_event_at": None,
    },
}


def new_node(kind: str, node_id: str) -> dict[str, Any]:
    return {
        "id": node_id,
        **NODE_DEFAULTS[kind],
        "is_placeholder": True,
        "created_at": None,
        "updated_at": None,
        "field_stamps": {},
    }


def _min(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b < a else a


def _max(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or b > a else a


def _take_newer_groups(merged: dict[str, Any], draft: NodeDraft) -> dict[str, Any]:
    """Per field group, the value with the greater stamp wins (stored or drafted)."""
    stamps = dict(merged.get("field_stamps") or {})
    for name, stamp in draft.stamps.items():
        if stamp > stamps.get(name, ""):
            stamps[name] = stamp
            merged.update(draft.groups[name])
    merged["field_stamps"] = stamps
    return merged


def merge_node(row: dict[str, Any], draft: NodeDraft) -> dict[str, Any]:
    """The row after the draft: per field group the greatest stamp wins; created/updated
    come from describing events once there are any, from references before that."""
    merged = _take_newer_groups(dict(row), draft)
    for column, value in (draft.min_values or {}).items():
        merged[column] = _min(merged.get(column), value)
    for column, value in (draft.max_values or {}).items():
        merged[column] = _max(merged.get(column), value)
    if draft.described is not None:
        first, last = draft.described
        if merged.get("is_placeholder", True):
            merged["created_at"], merged["updated_at"] = first, last
        else:
            merged["created_at"] = _min(merged["created_at"], first)
            merged["updated_at"] = _max(merged["updated_at"], last)
        merged["is_placeholder"] = False
    elif merged.get("is_placeholder", True) and draft.referenced is not None:
        merged["created_at"] = _min(merged.get("created_at"), draft.referenced[0])
        merged["updated_at"] = _max(merged.get("updated_at"), draft.referenced[1])
    return merged


def merge_step(row: dict[str, Any] | None, step_id: str, draft: NodeDraft) -> dict[str, Any]:
    start: dict[str, Any] = dict(row) if row else {"id": step_id, "field_stamps": {}, "registered_at": None}
    merged = _take_newer_groups(start, draft)
    if draft.described is not None:
        merged["registered_at"] = _min(merged.get("registered_at"), draft.described[0])
    return merged


def property_row(key: tuple[str, bool, str], prop: PropertyDraft) -> dict[str, Any]:
    node_id, is_custom, name = key
    return {
        "node_id": node_id,
        "is_custom": is_custom,
        "name": name,
        **property_columns(prop.value),
        "stamp_at": prop.stamp_at,
        "stamp_event": prop.stamp_event,
    }


def property_wins(prop: PropertyDraft, stored: dict[str, Any]) -> bool:
    return (prop.stamp_at, prop.stamp_event) > (stored["stamp_at"], stored["stamp_event"])
