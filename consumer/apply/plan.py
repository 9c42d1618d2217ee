"""Reduce a batch of events to per-row drafts, in memory, without touching the database.

Everything here is order-insensitive by construction: a field takes the value of the
event with the greatest stamp that mentions it; sets are sets; times are min/max; the
execution state takes the greatest (lattice rank, stamp). Merging a draft into a stored
row (``merge_node``) applies the same rule, so the store converges to one graph whatever
order and however many times events arrive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from metatrail.consumer.store.models import STRING_KEY_LEN
from metatrail.schemas.events import (
    ArtifactRecorded,
    ArtifactStateChanged,
    ContextMembersAdded,
    ContextUpserted,
    Event,
    ExecutionCached,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRecorded,
    ExecutionStarted,
    MetricsLogged,
    StepRegistered,
    TriggerRequested,
    TypeRegistered,
)
from metatrail.schemas.values import Properties, PropertyValue

#: Execution state lattice: a late ``started`` never undoes an end.
STATE_RANK = {
    "UNKNOWN": 0,
    "NEW": 0,
    "RUNNING": 1,
    "COMPLETE": 2,
    "FAILED": 2,
    "CACHED": 2,
    "CANCELED": 2,
}
#: Rank of the terminal states.
TERMINAL_RANK = 2
#: The state each SDK life-cycle event stands for (``execution.recorded`` says its own).
_EVENT_STATE = {
    ExecutionStarted: "RUNNING",
    ExecutionCompleted: "COMPLETE",
    ExecutionFailed: "FAILED",
    ExecutionCached: "CACHED",
}
#: When two declarations of a property disagree on its kind, the wider kind wins.
KIND_WIDTH = {"bool": 0, "int": 1, "float": 2, "string": 3, "json": 4}
_TEXT_LIMIT = 255


#: Most recent id texts, by the UUID's integer: a batch names the same ids many times.
_ID_TEXTS: dict[int, str] = {}
#: Entries kept before the cache starts again (bounded memory in a long-lived consumer).
_ID_TEXTS_MAX = 1 << 16


def sid(node_id: object) -> str:
    """The text of an id (a UUID, or already its text). str(UUID) costs several times a
    lookup, and keying by the UUID's integer avoids ``UUID.__hash__`` (a Python call)."""
    if node_id.__class__ is str:
        return node_id  # type: ignore[return-value]
    try:
        key = node_id.int  # type: ignore[attr-defined]
    except AttributeError:  # not a UUID (a str subclass...): its text, uncached
        return str(node_id)
    text = _ID_TEXTS.get(key)
    if text is None:
        if len(_ID_TEXTS) >= _ID_TEXTS_MAX:
            _ID_TEXTS.clear()
        text = _ID_TEXTS[key] = str(node_id)
    return text


def stamp_of(event: Event) -> str:
    """Sortable LWW stamp: occurred_at (fixed width, UTC) then event id."""
    when = event.occurred_at.replace(tzinfo=None).isoformat(timespec="microseconds")
    return f"{when}Z|{sid(event.event_id)}"


def _widened(span: tuple[datetime, datetime] | None, when: datetime) -> tuple[datetime, datetime]:
    """(first, last) including ``when``; the same span object when it already does (most
    references of a batch repeat a time already seen)."""
    if span is None:
        return (when, when)
    if when < span[0]:
        return (when, span[1])
    if when > span[1]:
        return (span[0], when)
    return span


class NodeDraft:
    """What a batch says about one node: field groups with their stamps, the first and
    last time an event described it and referenced it, and columns that keep their
    smallest value. Containers are made when first needed: most drafts of a large batch
    are mere references (an edge's far end, a context's member)."""

    __slots__ = ("groups", "stamps", "described", "referenced", "min_values", "max_values")

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, Any]] = {}
        self.stamps: dict[str, str] = {}
        #: (first, last) time an event described / referenced the node; None: none did.
        self.described: tuple[datetime, datetime] | None = None
        self.referenced: tuple[datetime, datetime] | None = None
        self.min_values: dict[str, datetime] | None = None
        self.max_values: dict[str, datetime] | None = None

    def offer(self, name: str, values: dict[str, Any], stamp: str) -> None:
        """Offer a field group; the greatest stamp wins."""
        if stamp > self.stamps.get(name, ""):
            self.stamps[name] = stamp
            self.groups[name] = values

    def saw_described(self, when: datetime) -> None:
        self.described = _widened(self.described, when)

    def saw_referenced(self, when: datetime) -> None:
        self.referenced = _widened(self.referenced, when)

    @property
    def references_only(self) -> bool:
        """Whether the batch only names this node (an edge's or a member's far end)."""
        return self.described is None and not self.stamps and not self.min_values and not self.max_values

    def offer_min(self, column: str, value: datetime) -> None:
        if self.min_values is None:
            self.min_values = {}
        current = self.min_values.get(column)
        if current is None or value < current:
            self.min_values[column] = value

    def offer_max(self, column: str, value: datetime) -> None:
        if self.max_values is None:
            self.max_values = {}
        current = self.max_values.get(column)
        if current is None or value > current:
            self.max_values[column] = value


@dataclass(slots=True)
class PropertyDraft:
    value: PropertyValue
    stamp_at: datetime
    stamp_event: str

    @property
    def stamp(self) -> tuple[datetime, str]:
        return (self.stamp_at, self.stamp_event)


@dataclass
class Plan:
    """Everything one batch will write."""

    contexts: dict[str, NodeDraft] = field(default_factory=dict)
    artifacts: dict[str, NodeDraft] = field(default_factory=dict)
    executions: dict[str, NodeDraft] = field(default_factory=dict)
    #: node kind -> (node_id, is_custom, name) -> winning value
    properties: dict[str, dict[tuple[str, bool, str], PropertyDraft]] = field(
        default_factory=lambda: {"artifact": {}, "execution": {}, "context": {}}
    )
    parents: set[tuple[str, str]] = field(default_factory=set)
    attributions: set[tuple[str, str]] = field(default_factory=set)
    associations: set[tuple[str, str]] = field(default_factory=set)
    #: (execution_id, direction, artifact_id, role, edge_type) -> earliest time seen
    edges: dict[tuple[str, str, str, str, str], datetime] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    #: (kind, name) -> property kinds, description, base type
    types: dict[tuple[str, str], tuple[dict[str, str], str | None, str | None]] = field(default_factory=dict)
    steps: dict[str, NodeDraft] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_kind = {"context": self.contexts, "artifact": self.artifacts, "execution": self.executions}

    def drafts(self, kind: str) -> dict[str, NodeDraft]:
        """The drafts of one node kind: 'context', 'artifact' or 'execution'."""
        return self._by_kind[kind]

    def node(self, kind: str, node_id: object) -> NodeDraft:
        table = self._by_kind[kind]
        key = sid(node_id)
        draft = table.get(key)
        if draft is None:
            draft = table[key] = NodeDraft()
        return draft

    def describe(self, kind: str, node_id: object, when: datetime) -> NodeDraft:
        draft = self.node(kind, node_id)
        draft.saw_described(when)
        return draft

    def reference(self, kind: str, node_id: object, when: datetime) -> NodeDraft:
        draft = self.node(kind, node_id)
        draft.saw_referenced(when)
        return draft

    def offer_properties(
        self, kind: str, node_id: object, props: Properties, custom_props: Properties, event: Event
    ) -> None:
        """Offer a node's properties and custom properties as one event sets them."""
        if not props and not custom_props:
            return
        table = self.properties[kind]
        node, at, event_id = sid(node_id), event.occurred_at, sid(event.event_id)
        for is_custom, offered in ((False, props), (True, custom_props)):
            for name, value in offered.items():
                key = (node, is_custom, name)
                old = table.get(key)
                # A draft is made only when it wins (most properties are offered once).
                if old is None or at > old.stamp_at or (at == old.stamp_at and event_id > old.stamp_event):
                    table[key] = PropertyDraft(value, at, event_id)

    def offer_type(
        self, kind: str, name: str | None, props: dict[str, str], description: str | None = None,
        base_type: str | None = None,
    ) -> None:
        if not name:
            return
        entry = self.types.get((kind, name))
        if (entry is not None and description is None and base_type is None
                and all(entry[0].get(n) == k for n, k in props.items())):
            return  # nothing new (a batch describes many nodes of one type)
        known, desc, base = entry or ({}, None, None)
        merged = widen(known, props)
        self.types[(kind, name)] = (merged, pick_description(desc, description), pick_base(base, base_type))

    def offer_property_kinds(self, kind: str, name: str | None, props: Properties) -> None:
        """``offer_type`` with the kinds of a node's properties, without building them
        when the type already declares each (most events of a batch: one type, many nodes)."""
        if not name:
            return
        entry = self.types.get((kind, name))
        if entry is not None:
            declared = entry[0]
            for prop_name, value in props.items():
                if declared.get(prop_name) != value.type:
                    break
            else:
                return
        self.offer_type(kind, name, _kinds(props))

    def describe_origin(self, kind: str, node_id: str, e: Any, stamp: str) -> NodeDraft:
        """Describe a node at the event's time, and with what an importer says of its
        origin (the source's creation time, MLMD id and external id)."""
        draft = self.describe(kind, node_id, e.occurred_at)
        origin = e.origin
        if origin is not None:
            if origin.created_at is not None:
                draft.saw_described(origin.created_at)
            if origin.mlmd_id is not None:
                draft.offer("mlmd_id", {"mlmd_id": origin.mlmd_id}, stamp)
            if origin.external_id is not None:
                draft.offer("external_id", {"external_id": origin.external_id}, stamp)
        return draft


def widen(known: dict[str, str], new: dict[str, str]) -> dict[str, str]:
    """Union of property kinds; on disagreement the wider kind wins (order-insensitive)."""
    merged = dict(known)
    for name, kind in new.items():
        old = merged.get(name)
        if old is None or KIND_WIDTH[kind] > KIND_WIDTH[old]:
            merged[name] = kind
    return merged


def pick_description(a: str | None, b: str | None) -> str | None:
    """A deterministic choice between two descriptions: the longer, then the greater."""
    if not b:
        return a or None
    if not a:
        return b
    candidates = [d for d in (a, b) if d]
    return max(candidates, key=lambda d: (len(d), d)) if candidates else None


def pick_base(a: str | None, b: str | None) -> str | None:
    """A deterministic choice between two base types: the one said, or the greater."""
    return max((t for t in (a, b) if t), default=None)


def _kinds(props: Properties) -> dict[str, str]:
    return {name: value.type for name, value in props.items()}


def build_plan(events: list[Event]) -> Plan:
    """Reduce already-deduplicated, not-yet-applied events to a plan."""
    plan = Plan()
    for event in events:
        _PLANNERS[type(event)](plan, event)
    return plan


def _plan_type(plan: Plan, e: TypeRegistered) -> None:
    plan.offer_type(e.type_kind, e.name, dict(e.properties), e.description, e.base_type)


def _plan_context(plan: Plan, e: ContextUpserted) -> None:
    stamp = stamp_of(e)
    cid = sid(e.context_id)
    draft = plan.describe_origin("context", cid, e, stamp)
    draft.offer("type", {"type": e.type}, stamp)
    draft.offer("name", {"name": e.name}, stamp)
    for parent in e.parent_ids:
        plan.reference("context", parent, e.occurred_at)
        plan.parents.add((cid, sid(parent)))
    plan.offer_properties("context", cid, e.properties, e.custom_properties, e)
    plan.offer_property_kinds("context", e.type, e.properties)


def _plan_artifact(plan: Plan, e: ArtifactRecorded) -> None:
    stamp = stamp_of(e)
    aid = sid(e.artifact_id)
    draft = plan.describe_origin("artifact", aid, e, stamp)
    for name in ("type", "uri", "digest", "name", "version"):
        value = getattr(e, name)
        if value is not None:
            draft.offer(name, {name: value}, stamp)
    draft.offer("state", {"state": e.state, "state_reason": None}, stamp)
    for cid in e.context_ids:
        plan.reference("context", cid, e.occurred_at)
        plan.attributions.add((sid(cid), aid))
    plan.offer_properties("artifact", aid, e.properties, e.custom_properties, e)
    plan.offer_property_kinds("artifact", e.type, e.properties)


def _plan_artifact_state(plan: Plan, e: ArtifactStateChanged) -> None:
    draft = plan.reference("artifact", e.artifact_id, e.occurred_at)
    draft.offer("state", {"state": e.state, "state_reason": e.reason}, stamp_of(e))
    plan.offer_properties("artifact", e.artifact_id, {}, e.custom_properties, e)


def _plan_execution(
    plan: Plan,
    e: ExecutionStarted | ExecutionCompleted | ExecutionFailed | ExecutionCached | ExecutionRecorded,
) -> None:
    stamp = stamp_of(e)
    xid = sid(e.execution_id)
    draft = plan.describe_origin("execution", xid, e, stamp)
    for name in ("type", "name", "fingerprint"):
        value = getattr(e, name)
        if value is not None:
            draft.offer(name, {name: value}, stamp)
    if e.trigger_id is not None:
        draft.offer("trigger_id", {"trigger_id": sid(e.trigger_id)}, stamp)
    if e.code_version is not None:
        draft.offer("code_version", {"code_version": e.code_version.model_dump(mode="json")}, stamp)
    if e.environment is not None:
        draft.offer("environment", {"environment": e.environment.model_dump(mode="json")}, stamp)
    state = e.state if isinstance(e, ExecutionRecorded) else _EVENT_STATE[type(e)]
    rank = STATE_RANK[state]
    ended_at = None
    if rank == TERMINAL_RANK:
        ended_at = e.ended_at if isinstance(e, ExecutionRecorded) and e.ended_at else e.occurred_at
    group: dict[str, Any] = {
        "state": state,
        "state_rank": rank,
        "ended_at": ended_at,
        "error_type": None,
        "error_message": None,
        "error_traceback": None,
        "cached_from": None,
    }
    error = e.error if isinstance(e, (ExecutionFailed, ExecutionRecorded)) else None
    if error is not None:
        group.update(
            error_type=error.type[:_TEXT_LIMIT],
            error_message=error.message,
            error_traceback=error.traceback,
        )
    cached_from = e.cached_from if isinstance(e, (ExecutionCached, ExecutionRecorded)) else None
    if cached_from is not None:
        group["cached_from"] = sid(cached_from)
    draft.offer("state", group, f"{rank}|{stamp}")
    draft.offer_max("last_event_at", e.occurred_at)
    if isinstance(e, ExecutionStarted):
        draft.offer_min("started_at", e.occurred_at)
        # The process that runs it: whether it is still alive tells a live execution from
        # an abandoned one (``metatrail db reap``).
        pid = e.producer.pid if 0 < e.producer.pid < 2**31 else None  # what a process id can be
        draft.offer("producer", {"producer_host": e.producer.host, "producer_pid": pid}, stamp)
    elif isinstance(e, ExecutionRecorded) and (e.started_at or state == "RUNNING"):
        draft.offer_min("started_at", e.started_at or e.occurred_at)
    contexts = [sid(c) for c in e.context_ids]
    for cid in contexts:
        plan.reference("context", cid, e.occurred_at)
        plan.associations.add((cid, xid))
    for direction, refs in (("INPUT", e.inputs), ("OUTPUT", e.outputs)):
        for ref in refs:
            aid = sid(ref.artifact_id)
            plan.reference("artifact", aid, e.occurred_at)
            key = (xid, direction, aid, ref.role, ref.edge_type or direction)
            at = ref.recorded_at or e.occurred_at
            seen = plan.edges.get(key)
            if seen is None or at < seen:
                plan.edges[key] = at
            for cid in contexts:
                plan.attributions.add((cid, aid))
    plan.offer_properties("execution", xid, e.parameters, e.custom_properties, e)
    plan.offer_property_kinds("execution", e.type, e.parameters)


def _plan_members(plan: Plan, e: ContextMembersAdded) -> None:
    cid = sid(e.context_id)
    plan.reference("context", cid, e.occurred_at)
    for aid in e.artifact_ids:
        plan.reference("artifact", aid, e.occurred_at)
        plan.attributions.add((cid, sid(aid)))
    for xid in e.execution_ids:
        plan.reference("execution", xid, e.occurred_at)
        plan.associations.add((cid, sid(xid)))


def _plan_metrics(plan: Plan, e: MetricsLogged) -> None:
    xid = sid(e.execution_id) if e.execution_id else None
    cid = sid(e.context_id) if e.context_id else None
    if xid:
        plan.reference("execution", xid, e.occurred_at).offer_max("last_event_at", e.occurred_at)
    if cid:
        plan.reference("context", cid, e.occurred_at)
    for seq, point in enumerate(e.points):
        finite = math.isfinite(point.value)
        plan.metrics.append(
            {
                "event_id": sid(e.event_id),
                "seq": seq,
                "execution_id": xid,
                "context_id": cid,
                "key": point.key,
                "step": point.step,
                "value": point.value if finite else None,
                "nonfinite": None if finite else repr(point.value),
                "timestamp": point.timestamp,
            }
        )


def _plan_step(plan: Plan, e: StepRegistered) -> None:
    draft = plan.steps.setdefault(sid(e.step_id), NodeDraft())
    draft.saw_described(e.occurred_at)
    draft.offer(
        "*",
        {
            "name": e.name,
            "pipeline": e.pipeline,
            "module": e.module,
            "qualname": e.qualname,
            "inputs": {k: v.model_dump(mode="json") for k, v in e.inputs.items()},
            "outputs": list(e.outputs),
            "policy": e.policy,
            "code_version": e.code_version.model_dump(mode="json") if e.code_version else None,
            "max_retries": e.max_retries,
        },
        stamp_of(e),
    )


def _plan_trigger(plan: Plan, e: TriggerRequested) -> None:
    """Trigger requests travel on the triggers topic; on the events path they are only
    recorded as applied (the outbox row was written by the evaluation that made them)."""


_PLANNERS: dict[type, Any] = {
    TypeRegistered: _plan_type,
    ContextUpserted: _plan_context,
    ArtifactRecorded: _plan_artifact,
    ArtifactStateChanged: _plan_artifact_state,
    ExecutionStarted: _plan_execution,
    ExecutionCompleted: _plan_execution,
    ExecutionFailed: _plan_execution,
    ExecutionCached: _plan_execution,
    ExecutionRecorded: _plan_execution,
    ContextMembersAdded: _plan_members,
    MetricsLogged: _plan_metrics,
    StepRegistered: _plan_step,
    TriggerRequested: _plan_trigger,
}


def property_columns(value: PropertyValue) -> dict[str, Any]:
    """Spread a typed value over the typed, indexable property columns."""
    cols: dict[str, Any] = {
        "value_type": value.type,
        "int_value": None,
        "double_value": None,
        "string_key": None,
        "string_value": None,
        "bool_value": None,
        "json_value": None,
    }
    v = value.value
    if value.type == "int":
        cols["int_value"] = v
        cols["double_value"] = float(v)
    elif value.type == "float":
        if math.isfinite(v):
            cols["double_value"] = v
        else:
            cols["json_value"] = repr(v)  # 'nan', 'inf', '-inf': MySQL stores no non-finite
    elif value.type == "string":
        cols["string_key"] = v[:STRING_KEY_LEN]
        cols["string_value"] = v
    elif value.type == "bool":
        cols["bool_value"] = v
    else:
        cols["json_value"] = v
    return cols
