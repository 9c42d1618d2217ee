"""Apply a batch of events to the store in one transaction, idempotently and in any order.

Design rules 2 and 3: each applied ``event_id`` is recorded in the same transaction as
its effects, so redelivery changes nothing; the batch is first reduced in memory
(``plan``), then merged into the stored rows, which are locked for the merge on backends
with row locks. A unique-key race with a concurrent applier surfaces as
``TransientStoreError``: retrying the whole batch then finds the other's work.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine, Table
from sqlalchemy.orm import Session

from metatrail.consumer.apply.bulk import WriteQueue, can_claim, claim
from metatrail.consumer.apply.collector import call_paused
from metatrail.consumer.apply.documents import node_documents
from metatrail.consumer.apply.merge import merge_node, merge_step, new_node, property_row, property_wins
from metatrail.consumer.apply.plan import (
    NodeDraft,
    Plan,
    PropertyDraft,
    build_plan,
    pick_base,
    pick_description,
    sid,
    widen,
)
from metatrail.consumer.apply.report import ApplyReport
from metatrail.consumer.apply.writer import (
    existing_keys,
    load_by_composite,
    load_rows_by,
    load_rows_to_merge,
    settled_ids,
)
from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.models import (
    AppliedEventRow,
    ArtifactPropertyRow,
    ArtifactRow,
    AssociationRow,
    AttributionRow,
    ContextPropertyRow,
    ContextRow,
    EdgeRow,
    ExecutionPropertyRow,
    ExecutionRow,
    MetricRow,
    ParentContextRow,
    StepRow,
    TypeRow,
)
from metatrail.consumer.triggers.evaluate import evaluate_triggers
from metatrail.schemas.events import Event

log = logging.getLogger("metatrail.apply")

_NODE_TABLES = {
    "context": (ContextRow.__table__, ContextPropertyRow.__table__),
    "artifact": (ArtifactRow.__table__, ArtifactPropertyRow.__table__),
    "execution": (ExecutionRow.__table__, ExecutionPropertyRow.__table__),
}


def apply_events(engine: Engine, events: Sequence[Event]) -> ApplyReport:
    """Apply validated events in one transaction.

    Idempotent and order-insensitive. Raises ``TransientStoreError`` when a retry of the
    whole call may succeed, ``StoreRejectedError`` when the store refuses a value of an
    event, ``StoreError`` otherwise; on any of them nothing was written.
    """
    with session_scope(engine) as session:
        return apply_in_session(session, events)


def apply_in_session(session: Session, events: Sequence[Event]) -> ApplyReport:
    """Apply events inside the caller's transaction (the caller commits). The cyclic
    collector is paused meanwhile (``metatrail.consumer.apply.collector``)."""
    return call_paused(_apply_fresh, session, events)


def _apply_fresh(session: Session, events: Sequence[Event]) -> ApplyReport:
    report = ApplyReport()
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(sid(event.event_id), event)
    now = datetime.now(timezone.utc)
    applied = [
        {"event_id": key, "kind": e.kind, "occurred_at": e.occurred_at, "applied_at": now} for key, e in unique.items()
    ]
    if can_claim(session):
        # Claimed first: an event a concurrent apply is applying (the same OpenLineage run
        # described in two requests at once) waits for it and is a duplicate here, rather
        # than a key conflict at the end that retries the whole batch.
        claimed = claim(session, AppliedEventRow.__table__, applied)
        fresh = [e for key, e in unique.items() if key in claimed]
        unwritten: list[dict[str, Any]] = []
    else:
        # Written at the end (SQLite writes one transaction at a time; on MySQL a key
        # conflict there is a concurrent apply: transient, and the retry finds it).
        done = existing_keys(session, AppliedEventRow.__table__, "event_id", unique)
        fresh = [e for key, e in unique.items() if key not in done]
        unwritten = [row for row in applied if row["event_id"] not in done]
    report.duplicates = len(events) - len(fresh)
    report.applied = len(fresh)
    if not fresh:
        return report
    plan = build_plan(fresh)
    writes = WriteQueue()
    _merge_plan(session, plan, report, writes)
    writes.add(AppliedEventRow.__table__, unwritten)
    writes.send(session)
    report.triggers_requested = evaluate_triggers(session, report)  # trigger evaluation
    return report


def _merge_plan(session: Session, plan: Plan, report: ApplyReport, writes: WriteQueue) -> None:
    """Read (and lock) what the batch merges into, merge, and queue the rows to write.
    Every read comes before every write, so on PostgreSQL the writes go out as one
    pipeline: the server inserts one chunk while the next is being encoded."""
    for kind in ("context", "artifact", "execution"):
        _merge_kind(session, kind, plan, report, writes)
    _merge_types(session, plan, writes)
    _merge_steps(session, plan, report, writes)
    parents = [{"context_id": c, "parent_id": p} for c, p in sorted(plan.parents)]
    writes.add(ParentContextRow.__table__, parents, "ignore")
    attributions = [{"context_id": c, "artifact_id": a} for c, a in sorted(plan.attributions)]
    writes.add(AttributionRow.__table__, attributions, "ignore")
    associations = [{"context_id": c, "execution_id": x} for c, x in sorted(plan.associations)]
    writes.add(AssociationRow.__table__, associations, "ignore")
    edges = [
        {"execution_id": x, "direction": d, "artifact_id": a, "role": r, "edge_type": k, "created_at": t}
        for (x, d, a, r, k), t in sorted(plan.edges.items())
    ]
    writes.add(EdgeRow.__table__, edges, "keep_min", min_column="created_at")
    # Keyed by (event_id, seq): a sample already stored stays as it is. Why not "insert":
    # once ``metatrail db prune`` has forgotten an old event id, a redelivery of that
    # event must be a no-op here too, not a key conflict retried forever.
    writes.add(MetricRow.__table__, plan.metrics, "ignore")


def _merge_kind(session: Session, kind: str, plan: Plan, report: ApplyReport, writes: WriteQueue) -> None:
    """Merge and write the batch's nodes of one kind and their properties.

    The property document travels in the node row itself (one write per node, not an
    insert and then an update), so the stored properties of nodes that existed are read
    before the nodes are written; the node rows are locked first, as everywhere.
    """
    drafts = plan.drafts(kind)
    property_drafts = plan.properties[kind]
    if not drafts and not property_drafts:
        return
    node_table, property_table = _NODE_TABLES[kind]
    # A mere reference to a node that is already recorded changes nothing: skip it
    # without reading (and locking) its whole row. Importers and executions reference
    # many such nodes (their inputs, a context's members).
    settled = settled_ids(session, node_table, [i for i, d in drafts.items() if d.references_only])
    if settled:
        drafts = {i: d for i, d in drafts.items() if i not in settled}
    stored = load_rows_to_merge(session, node_table, "id", drafts)
    old_nodes = {key[0] for key in property_drafts} & set(stored)
    stored_properties = {
        (r["node_id"], bool(r["is_custom"]), r["name"]): r
        for r in load_rows_by(session, property_table, "node_id", old_nodes)
    }
    # Every property draft belongs to a node the batch describes (the planners offer a
    # node's properties right after describing it), so its document rides on that row.
    documents = node_documents(stored_properties, property_drafts)
    _merge_nodes(kind, node_table, drafts, stored, documents, report, writes)
    _merge_properties(property_table, property_drafts, stored_properties, writes)


def _merge_nodes(
    kind: str,
    table: Table,
    drafts: dict[str, NodeDraft],
    stored: dict[str, dict[str, Any]],
    documents: dict[str, str | None],
    report: ApplyReport,
    writes: WriteQueue,
) -> None:
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for node_id in sorted(drafts):
        before = stored.get(node_id)
        after = merge_node(before if before is not None else new_node(kind, node_id), drafts[node_id])
        after["properties_doc"] = documents[node_id] if node_id in documents else after.get("properties_doc")
        if before is None:
            inserts.append(after)
        elif after != before:
            updates.append(after)
        if kind == "artifact" and after["state"] == "LIVE" and (before is None or before["state"] != "LIVE"):
            report.live_artifact_ids.append(node_id)
    writes.add(table, inserts)
    writes.add(table, updates, "replace")


def _merge_properties(
    table: Table,
    drafts: dict[tuple[str, bool, str], PropertyDraft],
    stored: dict[tuple[str, bool, str], dict[str, Any]],
    writes: WriteQueue,
) -> None:
    """Only nodes that existed before this batch can have stored properties to merge with."""
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for key in sorted(drafts):
        prop = drafts[key]
        row = stored.get(key)
        if row is None:
            inserts.append(property_row(key, prop))
        elif property_wins(prop, row):
            updates.append(property_row(key, prop))
    writes.add(table, inserts)
    writes.add(table, updates, "replace")


def _merge_types(session: Session, plan: Plan, writes: WriteQueue) -> None:
    if not plan.types:
        return
    table = TypeRow.__table__
    stored = load_by_composite(session, table, ("kind", "name"), plan.types)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for (kind, name), (props, description, base_type) in sorted(plan.types.items()):
        row = stored.get((kind, name))
        if row is None:
            inserts.append({"kind": kind, "name": name, "properties": props, "description": description,
                            "base_type": base_type})
            continue
        merged = {
            "kind": kind,
            "name": name,
            "properties": widen(row["properties"] or {}, props),
            "description": pick_description(row["description"], description),
            "base_type": pick_base(row["base_type"], base_type),
        }
        if merged != row:
            updates.append(merged)
    writes.add(table, inserts)
    writes.add(table, updates, "replace")


def _merge_steps(session: Session, plan: Plan, report: ApplyReport, writes: WriteQueue) -> None:
    if not plan.steps:
        return
    table = StepRow.__table__
    stored = load_rows_to_merge(session, table, "id", plan.steps)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for step_id in sorted(plan.steps):
        before = stored.get(step_id)
        after = merge_step(before, step_id, plan.steps[step_id])
        if before is None:
            inserts.append(after)
        elif after != before:
            updates.append(after)
        report.registered_step_ids.append(step_id)
    writes.add(table, inserts)
    writes.add(table, updates, "replace")
