"""The domain objects queries return: frozen dataclasses, never ORM rows.

Every object has ``to_json()`` giving plain JSON-ready data (datetimes as ISO 8601 strings),
the form the CLI prints with ``--json``. Property mappings hold plain Python values
(int, float, str, bool, or JSON data), and only the user's: metatrail's bookkeeping
properties (names under ``metatrail.schemas.reserved.RESERVED_PREFIX``) are taken out when
nodes are built (:mod:`metatrail.consumer.query.raw`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Generic, Literal, TypeVar

NodeKind = Literal["artifact", "execution", "context"]
Direction = Literal["upstream", "downstream", "both"]

#: Artifact states that queries leave out unless asked (``include_retired=True``).
RETIRED_STATES: frozenset[str] = frozenset({"DELETED", "ABANDONED"})


_PLAIN = frozenset({str, int, bool, type(None)})

#: ISO 8601 text of UTC times already written, by time: a lineage answer writes 2,000
#: of them (created, updated, started, ended... per node), many equal (a node's
#: ``updated_at`` is its ``created_at`` until it changes; runs share their start), and
#: a dict lookup costs a fiftieth of ``isoformat()``. Emptied when full.
_UTC_TEXT: dict[datetime, str] = {}
_UTC_TEXT_MAX = 65_536


def _utc_text(value: datetime) -> str:
    """``value.isoformat()`` of a UTC time, remembered. Only times whose zone is
    ``timezone.utc`` are remembered: equal times in other zones (equal, and hashed alike)
    are written with their own offset."""
    if value.tzinfo is not timezone.utc:
        return value.isoformat()
    text = _UTC_TEXT.get(value)
    if text is None:
        if len(_UTC_TEXT) >= _UTC_TEXT_MAX:
            _UTC_TEXT.clear()
        text = _UTC_TEXT[value] = value.isoformat()
    return text


def _jsonable(value: Any) -> Any:
    """JSON-ready data. The common cases come first and are tested by exact type: this
    runs for every field of every node an answer holds (a 500-node lineage answer: ~20k
    values), so a plain value must cost one set lookup."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        if value - value == 0.0:  # finite (NaN - NaN and inf - inf are NaN)
            return value
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    if kind is dict:
        return {k if type(k) is str else str(k): v if type(v) in _PLAIN else _jsonable(v) for k, v in value.items()}
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):  # a float subclass (numpy's float64)
        return _jsonable(float(value))
    if hasattr(value, "to_json"):
        return value.to_json()
    return value


#: Annotations whose values are written as they are (no conversion).
_PLAIN_ANNOTATIONS = frozenset({"str", "int", "bool", "None"})


@dataclass(frozen=True)
class _Layout:
    """How a class's objects become JSON data: its field names in order, a getter of
    their values in that order (``operator.itemgetter``, in C), and the fields whose
    values may need converting (times, mappings, floats: any not annotated with str,
    int, bool or None alone)."""

    names: tuple[str, ...]
    values: Callable[[dict[str, Any]], Any]
    loose: tuple[str, ...]

    @classmethod
    def of(cls, kind: type) -> _Layout:
        found = fields(kind)
        names = tuple(f.name for f in found)
        loose = tuple(f.name for f in found
                      if not {part.strip() for part in str(f.type).split("|")} <= _PLAIN_ANNOTATIONS)
        getter = itemgetter(*names)
        return cls(names, getter if len(names) > 1 else lambda d: (getter(d),), loose)


_LAYOUTS: dict[type, _Layout] = {}


class _JSON:
    def to_json(self) -> dict[str, Any]:
        """Plain JSON-ready data (field order kept).

        Built in C where it can be: the values in field order by one ``itemgetter`` call,
        zipped into a dict; then only the fields that may hold something to convert are
        looked at. A 500-node lineage answer builds 500 of these: converting field by field
        in Python cost ~24 µs a node, about a third of the answer's time."""
        cls = type(self)
        layout = _LAYOUTS.get(cls)
        if layout is None:
            layout = _LAYOUTS[cls] = _Layout.of(cls)
        out = dict(zip(layout.names, layout.values(self.__dict__)))
        plain = _PLAIN
        for name in layout.loose:
            if type(value := out[name]) not in plain:
                out[name] = _jsonable(value)
        return out


@dataclass(frozen=True)
class Artifact(_JSON):
    """A file, table, model... ``state`` is LIVE, DELETED, ABANDONED...; a placeholder is an
    artifact referenced by an edge before any event recorded it."""

    id: str
    type: str | None
    name: str | None
    uri: str | None
    state: str
    digest: str | None = None
    version: str | None = None
    state_reason: str | None = None
    is_placeholder: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    custom_properties: dict[str, Any] = field(default_factory=dict)
    #: The node's id in the MLMD store it was imported from, and MLMD's external id.
    mlmd_id: int | None = None
    external_id: str | None = None
    kind: NodeKind = "artifact"


@dataclass(frozen=True)
class Execution(_JSON):
    """One run of a step. ``properties`` are its parameters. ``stale`` says why a RUNNING
    execution is presumed abandoned (``metatrail db reap`` closes those as FAILED)."""

    id: str
    type: str | None
    name: str | None
    state: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    fingerprint: str | None = None
    cached_from: str | None = None
    trigger_id: str | None = None
    code_version: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None
    is_placeholder: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    custom_properties: dict[str, Any] = field(default_factory=dict)
    mlmd_id: int | None = None
    external_id: str | None = None
    kind: NodeKind = "execution"
    uri: None = None
    #: The process that started it, and when the last event about it occurred.
    producer_host: str | None = None
    producer_pid: int | None = None
    last_event_at: datetime | None = None
    #: Why a RUNNING execution is presumed abandoned (its process is gone, or it has been
    #: silent too long: ``metatrail.consumer.query.liveness``); ``None`` when it is not.
    stale: str | None = None


@dataclass(frozen=True)
class Context(_JSON):
    """A pipeline, run, experiment... Bookkeeping properties (``metatrail.schemas.reserved``)
    are never in ``properties`` / ``custom_properties``: a run's become its attributes."""

    id: str
    type: str | None
    name: str | None
    is_placeholder: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    parent_ids: tuple[str, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)
    custom_properties: dict[str, Any] = field(default_factory=dict)
    #: A run's timing and outcome (``COMPLETE`` / ``FAILED``) as ``run()`` records them;
    #: None for contexts that no ``run()`` opened (pipelines, experiments, imports).
    started_at: datetime | None = None
    ended_at: datetime | None = None
    status: str | None = None
    mlmd_id: int | None = None
    external_id: str | None = None
    kind: NodeKind = "context"


Node = Artifact | Execution | Context


@dataclass(frozen=True)
class Edge(_JSON):
    """A lineage edge. ``input``: artifact -> execution; ``output``: execution -> artifact."""

    source: str
    target: str
    kind: Literal["input", "output"]
    role: str = ""
    #: MLMD's finer event type (DECLARED_OUTPUT, INTERNAL_INPUT, ...); None for a plain edge.
    edge_type: str | None = None


@dataclass(frozen=True)
class ExecutionLinks(_JSON):
    """An execution's edges, as (artifact id, role) pairs, and the contexts it belongs to."""

    execution_id: str
    inputs: tuple[tuple[str, str], ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    context_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class MetricPoint(_JSON):
    """One metric sample of an execution or of a context (a run)."""

    key: str
    value: float
    step: int | None
    timestamp: datetime
    execution_id: str | None = None
    context_id: str | None = None


@dataclass(frozen=True)
class LineageGraph:
    """A lineage subgraph. ``truncated`` is True when a hop or size limit cut it: more nodes
    exist beyond what is returned. Nodes are ordered by distance from the start, then id."""

    nodes: tuple[Artifact | Execution, ...]
    edges: tuple[Edge, ...]
    truncated: bool
    start_id: str = ""
    depths: dict[str, int] = field(default_factory=dict)

    def node(self, node_id: str) -> Artifact | Execution:
        for n in self.nodes:
            if n.id == node_id:
                return n
        raise KeyError(node_id)

    def to_json(self) -> dict[str, Any]:
        """``{"nodes": [...], "edges": [...], "truncated": bool}`` (the CLI's --json)."""
        nodes = []
        depths = self.depths
        for n in self.nodes:
            node = {"id": n.id, "kind": n.kind, "type": n.type, "name": n.name, "uri": n.uri, "state": n.state,
                    "hops": depths.get(n.id)}
            node.update(n.to_json())  # the keys above keep their place; the rest follow
            nodes.append(node)
        return {
            "nodes": nodes,
            "edges": [
                {"source": e.source, "target": e.target, "kind": e.kind, "role": e.role,
                 **({"edge_type": e.edge_type} if e.edge_type else {})}
                for e in self.edges
            ],
            "truncated": self.truncated,
        }


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results; pass ``next_cursor`` back to get the next (None: no more)."""

    items: tuple[T, ...]
    next_cursor: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"items": [_jsonable(i) for i in self.items], "next_cursor": self.next_cursor}


@dataclass(frozen=True)
class RunColumn(_JSON):
    """One compared run (context) or execution, with its timing: an execution's own; a
    run's as ``run()`` recorded it, else the span of its executions. ``state`` is the
    execution's state or the run's status (None when unknown)."""

    id: str
    kind: NodeKind
    type: str | None
    name: str | None
    created_at: datetime | None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    state: str | None = None


@dataclass(frozen=True)
class Comparison:
    """Params, metrics, code versions and environments side by side: ``params[key][i]``
    (and likewise) belongs to ``columns[i]`` (None where absent). Metric cells hold the
    last value (highest step, then latest timestamp). ``code`` and ``environment`` are the
    executions' code version and environment flattened (``git_commit``,
    ``packages.numpy``), prefixed ``<execution type>.`` for a run's executions."""

    columns: tuple[RunColumn, ...]
    params: dict[str, tuple[Any, ...]]
    metrics: dict[str, tuple[float | None, ...]]
    code: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    environment: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    #: The sections, in the order a table shows them.
    SECTIONS = ("params", "metrics", "code", "environment")

    def to_json(self) -> dict[str, Any]:
        return {
            "columns": [c.to_json() for c in self.columns],
            **{s: {k: _jsonable(list(v)) for k, v in getattr(self, s).items()} for s in self.SECTIONS},
        }


@dataclass(frozen=True)
class MetricHistoryRow(_JSON):
    """A metric sample with the execution (and its run) that logged it."""

    key: str
    value: float
    step: int | None
    timestamp: datetime
    execution_id: str | None
    execution_type: str | None
    execution_name: str | None
    context_id: str | None
    context_name: str | None
