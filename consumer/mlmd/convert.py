"""Turn MLMD rows into metatrail events, with ids derived from the source.

Identity: a node's id follows from the store's identity, its kind and its MLMD id, and an
event's id from the source rows it was made from (``ids.SourceIds``, in MLMD's id order),
so importing an unchanged store again gives the same events (duplicates, applied as
no-ops), and a node that changed in MLMD gives a new event whose time (MLMD's
``last_update_time_since_epoch``) makes it win.

Mapping: types -> ``type.registered`` (property kinds, base type from ``ParentType``);
contexts -> ``context.upserted`` (parent contexts); artifacts -> ``artifact.recorded``;
executions -> ``execution.recorded`` (MLMD's state and times) carrying their events as
input and output edges (role = the event path, ``examples:0`` for TFX's ``[key, index]``;
MLMD's finer event types kept as the edge type); attributions and associations ->
``context.members_added``. A node the contract cannot hold becomes a dead letter.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from metatrail.consumer.apply.report import DeadLetter, RawRecord
from metatrail.consumer.mlmd.ids import Ids, SourceIds
from metatrail.consumer.mlmd.reader import NodePage, TypeInfo
from metatrail.consumer.mlmd.values import property_value
from metatrail.schemas.construct import construct, make
from metatrail.schemas.events import (
    ArtifactRecorded,
    ArtifactRef,
    ContextMembersAdded,
    ContextUpserted,
    Event,
    ExecutionRecorded,
    Origin,
    ProducerInfo,
    TypeRegistered,
)
from metatrail.schemas.values import Properties

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ARTIFACT_STATES = ("UNKNOWN", "PENDING", "LIVE", "MARKED_FOR_DELETION", "DELETED", "ABANDONED", "REFERENCE")
EXECUTION_STATES = ("UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED")
EDGE_TYPES = ("UNKNOWN", "DECLARED_OUTPUT", "DECLARED_INPUT", "INPUT", "OUTPUT", "INTERNAL_INPUT",
              "INTERNAL_OUTPUT", "PENDING_OUTPUT")
OUTPUT_TYPES = frozenset({"OUTPUT", "DECLARED_OUTPUT", "INTERNAL_OUTPUT", "PENDING_OUTPUT"})
#: MLMD type kinds (Type.type_kind) and property data types (PropertyType).
TYPE_KINDS = {0: "execution", 1: "artifact", 2: "context"}
PROPERTY_KINDS = {1: "int", 2: "float", 3: "string", 4: "json", 5: "json", 6: "bool"}
TERMINAL = frozenset({"COMPLETE", "FAILED", "CACHED", "CANCELED"})
_BAD_TYPE_CHARS = re.compile(r"[^A-Za-z0-9_.:\-]")
_TYPE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:\-]*$")
#: Longest role and property name the contract holds.
MAX_ROLE = 128
MAX_PROPERTY_NAME = 128


@dataclass
class Converted:
    """Events made from a page of rows, and the rows that could not be made into events."""

    events: list[Event] = field(default_factory=list)
    dead: list[tuple[RawRecord, DeadLetter]] = field(default_factory=list)


@functools.lru_cache(maxsize=1 << 12)
def millis(value: Any) -> datetime:
    """An MLMD time (milliseconds since the epoch; NULL as 0) as an aware UTC datetime.
    Cached: the nodes MLMD writes in one call share their times (a node's creation and
    update time are often one value too)."""
    return EPOCH + timedelta(milliseconds=int(value or 0))


def type_name(name: str) -> str:
    """MLMD's type name as a metatrail type name: unchanged when the contract allows it,
    otherwise with the characters it does not allow replaced by ``_``."""
    if len(name) <= 128 and _TYPE_NAME.match(name):
        return name
    cleaned = _BAD_TYPE_CHARS.sub("_", name)
    if not cleaned[:1].isalpha() and cleaned[:1] != "_":
        cleaned = "_" + cleaned
    return cleaned[:128]


def role_of(steps: Iterable[tuple[Any, Any, Any]]) -> str:
    """An event path as a role: keys and indexes joined by ``:`` (TFX's ``[key, index]``
    is ``examples:0``, as the SDK names the items of a list argument)."""
    parts = [str(index) if is_index else str(key if key is not None else "") for is_index, index, key in steps]
    return ":".join(parts)[:MAX_ROLE]


class Converter:
    """Converts the rows of one store (``identity``) whose types are ``types``.

    Events are built without pydantic's validation (``construct``): the values come from
    typed columns, and what the contract limits (lengths, empty names) is checked here
    first, a failed check making the node a dead letter. The tests re-validate every event
    this makes."""

    def __init__(self, identity: str, types: dict[int, TypeInfo], ids: Ids | None = None) -> None:
        self.identity = identity
        self.types = types
        self.type_names = {t.id: type_name(t.name) for t in types.values()}
        self._ids: Ids = ids or SourceIds(identity)
        #: node_id(kind, MLMD id): a page names the same nodes many times (edges, members).
        self.node_id = functools.lru_cache(maxsize=1 << 16)(self._ids.node)
        #: Who writes the events: this process.
        self._producer = ProducerInfo.current()

    # -- types --------------------------------------------------------------------------
    def type_events(self) -> Converted:
        out = Converted()
        for t in self.types.values():
            kind = TYPE_KINDS.get(t.kind)
            if kind is None:
                continue
            props = {n[:MAX_PROPERTY_NAME]: PROPERTY_KINDS[k] for n, k in t.properties.items()
                     if k in PROPERTY_KINDS and n}
            parents = [self.type_names[p] for p in t.parents if p in self.type_names]
            content = (t.name, t.kind, t.description, sorted(props.items()), sorted(parents))
            self._build(out, "type", t.id, content, lambda: construct(
                TypeRegistered, event_id=self._ids.event("type", t.id, (content,)), occurred_at=EPOCH,
                producer=self._producer, type_kind=kind, name=self.type_names[t.id], properties=props,
                description=t.description or None, base_type=min(parents) if parents else None))
        return out

    # -- nodes --------------------------------------------------------------------------
    def node_events(self, page: NodePage) -> Converted:
        out = Converted()
        build = {"artifact": self._artifact, "execution": self._execution, "context": self._context}[page.kind]
        for row in page.rows:
            build(out, row, page)
        return out

    def _properties(self, rows: list[tuple[Any, ...]]) -> tuple[Properties, Properties]:
        plain: Properties = {}
        custom: Properties = {}
        for name, is_custom, i, d, s, b, proto, raw in rows:
            if not name:
                raise ValueError("a property has an empty name")
            (custom if is_custom else plain)[str(name)[:MAX_PROPERTY_NAME]] = property_value(i, d, s, b, proto, raw)
        return plain, custom

    def _origin(self, mlmd_id: int, external_id: Any, created: Any) -> Origin:
        return make(Origin, mlmd_id=mlmd_id, external_id=_text("external_id", external_id, 255),
                    created_at=millis(created))

    def _artifact(self, out: Converted, row: tuple[Any, ...], page: NodePage) -> None:
        mlmd_id, type_id, uri, state, name, external_id, created, updated = row
        props = page.properties.get(mlmd_id, [])

        def make_event() -> Event:
            plain, custom = self._properties(props)
            return construct(
                ArtifactRecorded, event_id=self._ids.event("artifact", mlmd_id, (row, props)),
                occurred_at=millis(max(created or 0, updated or 0)), producer=self._producer,
                artifact_id=self.node_id("artifact", mlmd_id), type=self.type_names.get(type_id, "Unknown"),
                uri=_text("uri", uri, 2048) or "", state=ARTIFACT_STATES[state] if state in range(7) else "UNKNOWN",
                name=_text("name", name, 255), properties=plain, custom_properties=custom,
                origin=self._origin(mlmd_id, external_id, created))

        self._build(out, "artifact", mlmd_id, (row, props), make_event)

    def _execution(self, out: Converted, row: tuple[Any, ...], page: NodePage) -> None:
        mlmd_id, type_id, state_code, name, external_id, created, updated = row
        props = page.properties.get(mlmd_id, [])
        events = page.events.get(mlmd_id, [])
        paths = [page.paths.get(e[0], []) for e in events]

        def make_event() -> Event:
            state = EXECUTION_STATES[state_code] if state_code in range(7) else "UNKNOWN"
            plain, custom = self._properties(props)
            inputs: list[ArtifactRef] = []
            outputs: list[ArtifactRef] = []
            for (_, artifact_id, _, edge_code, at), steps in zip(events, paths):
                edge_type = EDGE_TYPES[edge_code] if edge_code in range(8) else "UNKNOWN"
                ref = make(ArtifactRef, artifact_id=self.node_id("artifact", artifact_id), role=role_of(steps),
                           edge_type=None if edge_type in ("INPUT", "OUTPUT") else edge_type,
                           recorded_at=millis(at) if at is not None else None)
                (outputs if edge_type in OUTPUT_TYPES else inputs).append(ref)
            when = millis(max(created or 0, updated or 0))
            return construct(
                ExecutionRecorded, event_id=self._ids.event("execution", mlmd_id, (row, props, events, paths)),
                occurred_at=when, producer=self._producer, execution_id=self.node_id("execution", mlmd_id),
                type=self.type_names.get(type_id, "Unknown"), name=_text("name", name, 255), state=state,
                started_at=millis(created), ended_at=when if state in TERMINAL else None, parameters=plain,
                custom_properties=custom, inputs=inputs, outputs=outputs,
                origin=self._origin(mlmd_id, external_id, created))

        self._build(out, "execution", mlmd_id, (row, props, events, paths), make_event)

    def _context(self, out: Converted, row: tuple[Any, ...], page: NodePage) -> None:
        mlmd_id, type_id, name, external_id, created, updated = row
        props = page.properties.get(mlmd_id, [])
        parents = sorted(page.parents.get(mlmd_id, []))

        def make_event() -> Event:
            plain, custom = self._properties(props)
            if not name:
                raise ValueError("a context needs a name")
            return construct(
                ContextUpserted, event_id=self._ids.event("context", mlmd_id, (row, props, parents)),
                occurred_at=millis(max(created or 0, updated or 0)), producer=self._producer,
                context_id=self.node_id("context", mlmd_id), type=self.type_names.get(type_id, "Unknown"),
                name=_text("name", name, 255), parent_ids=[self.node_id("context", p) for p in parents],
                properties=plain, custom_properties=custom, origin=self._origin(mlmd_id, external_id, created))

        self._build(out, "context", mlmd_id, (row, props, parents), make_event)

    # -- memberships --------------------------------------------------------------------
    def membership_events(self, table: str, pairs: list[tuple[int, int]]) -> Converted:
        """One ``context.members_added`` per context of a page of Attribution (artifacts)
        or Association (executions) rows."""
        member_kind = "artifact" if table == "Attribution" else "execution"
        by_context: dict[int, list[int]] = {}
        for context, member in pairs:
            by_context.setdefault(context, []).append(member)
        out = Converted()
        for context, members in by_context.items():
            members.sort()
            ids = [self.node_id(member_kind, m) for m in members]
            self._build(out, table.lower(), context, members, lambda: construct(
                ContextMembersAdded, event_id=self._ids.event(table.lower(), context, (members,)), occurred_at=EPOCH,
                producer=self._producer, context_id=self.node_id("context", context),
                artifact_ids=ids if member_kind == "artifact" else [],
                execution_ids=ids if member_kind == "execution" else []))
        return out

    # -- common -------------------------------------------------------------------------
    def _build(self, out: Converted, kind: str, mlmd_id: Any, content: Any, make_event: Any) -> None:
        """Append ``make_event()``'s event, or a dead letter naming the source row when the
        contract cannot hold it (a uri longer than 2,048 characters, an empty name...)."""
        try:
            out.events.append(make_event())
        except (ValidationError, ValueError) as exc:
            key = f"mlmd:{self.identity}:{kind}:{mlmd_id}"
            payload = json.dumps({"mlmd_store": self.identity, "kind": kind, "mlmd_id": mlmd_id, "rows": repr(content)})
            reason = f"MLMD {kind} {mlmd_id} cannot be imported: {_first_error(exc)}"
            out.dead.append((RawRecord(payload=payload.encode("utf-8"), source_key=key), DeadLetter(key, reason)))


def _text(field_name: str, value: Any, limit: int) -> str | None:
    """A text column as the contract takes it: None for NULL or empty; ValueError when
    longer than the contract's limit."""
    if value is None or value == "":
        return None
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    if len(text) > limit:
        raise ValueError(f"{field_name} is {len(text)} characters, longer than the {limit} metatrail keeps")
    return text


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(event)"
        return f"field '{loc}': {err['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
