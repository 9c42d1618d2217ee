"""The API's JSON shapes, for the OpenAPI document and its clients.

Bodies are built from the query layer's domain objects (their ``to_json()``), never from
ORM rows; these models describe them (a test checks responses against them through the
OpenAPI document). Non-finite floats travel as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` (JSON has no such numbers).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: A float as JSON can carry it.
Number = float | Literal["NaN", "Infinity", "-Infinity"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- errors ---------------------------------------------------------------------------------
class Candidate(_Out):
    kind: str
    id: str
    name: str | None = None


class ErrorDetail(_Out):
    code: str = Field(description="Stable machine-readable code, e.g. not_found, bad_request, ambiguous_id.")
    message: str = Field(description="One line saying what was wrong.")
    position: int | None = Field(None, description="Position in the filter text of a filter error.")
    candidates: list[Candidate] | None = Field(None, description="Nodes an ambiguous id prefix matches.")


class ErrorResponse(_Out):
    error: ErrorDetail


# --- nodes ----------------------------------------------------------------------------------
class ArtifactOut(_Out):
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
    properties: dict[str, Any] = {}
    custom_properties: dict[str, Any] = {}
    mlmd_id: int | None = Field(None, description="The node's id in the ML Metadata store it was imported from.")
    external_id: str | None = Field(None, description="MLMD's external id, when the source store had one.")
    kind: Literal["artifact"] = "artifact"


class ExecutionOut(_Out):
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
    properties: dict[str, Any] = {}
    custom_properties: dict[str, Any] = {}
    mlmd_id: int | None = Field(None, description="The node's id in the ML Metadata store it was imported from.")
    external_id: str | None = Field(None, description="MLMD's external id, when the source store had one.")
    kind: Literal["execution"] = "execution"
    uri: None = None
    producer_host: str | None = Field(None, description="Host of the process that recorded it.")
    producer_pid: int | None = None
    last_event_at: datetime | None = None
    stale: str | None = Field(None, description="Why a RUNNING execution looks abandoned (its producer gone), if it does.")


class ContextOut(_Out):
    id: str
    type: str | None
    name: str | None
    is_placeholder: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None
    parent_ids: list[str] = []
    properties: dict[str, Any] = {}
    custom_properties: dict[str, Any] = {}
    started_at: datetime | None = Field(None, description="A run's start as run() recorded it.")
    ended_at: datetime | None = None
    status: str | None = Field(None, description="A run's outcome (COMPLETE, FAILED) as run() recorded it.")
    mlmd_id: int | None = Field(None, description="The node's id in the ML Metadata store it was imported from.")
    external_id: str | None = Field(None, description="MLMD's external id, when the source store had one.")
    kind: Literal["context"] = "context"


class NodeRefOut(_Out):
    id: str
    kind: str
    type: str | None
    name: str | None
    state: str | None = None
    role: str = ""


class _Neighbourhood(_Out):
    contexts: list[NodeRefOut] = []
    producers: list[NodeRefOut] = []
    consumers: list[NodeRefOut] = []
    inputs: list[NodeRefOut] = []
    outputs: list[NodeRefOut] = []
    parents: list[NodeRefOut] = []
    children: list[NodeRefOut] = []
    counts: dict[str, int] = Field({}, description="Full sizes of the neighbour lists (each list holds at most 1,000).")


class ArtifactDetail(ArtifactOut, _Neighbourhood):
    pass


class ExecutionDetail(ExecutionOut, _Neighbourhood):
    pass


class ContextDetail(ContextOut, _Neighbourhood):
    pass


class _Page(_Out):
    next_page_token: str | None = Field(None, description="Pass as page_token for the next page; null: no more.")
    total: int | None = Field(None, description="How many match (only with count=true).")


class ArtifactPage(_Page):
    items: list[ArtifactOut]


class ExecutionPage(_Page):
    items: list[ExecutionOut]


class ContextPage(_Page):
    items: list[ContextOut]


class LatestOut(_Out):
    artifact: ArtifactOut | None


class RetireRequest(_Out):
    state: Literal["DELETED", "ABANDONED", "MARKED_FOR_DELETION", "LIVE"] = "DELETED"
    reason: str | None = Field(None, max_length=2000)


class RetireOut(_Out):
    id: str
    state: str
    event_id: str
    result: EventsResult


# --- lineage --------------------------------------------------------------------------------
class LineageNodeOut(_Out):
    model_config = ConfigDict(extra="allow")
    id: str
    kind: Literal["artifact", "execution"]
    type: str | None
    name: str | None
    uri: str | None
    state: str
    hops: int | None


class EdgeOut(_Out):
    source: str
    target: str
    kind: Literal["input", "output"]
    role: str
    edge_type: str | None = Field(None, description="MLMD's finer event type (DECLARED_OUTPUT, ...), if imported.")


class FrontierOut(_Out):
    id: str
    hidden_upstream: int = Field(description="Neighbours upstream of this node that are not in the answer.")
    hidden_downstream: int = Field(description="Neighbours downstream of this node that are not in the answer.")


class LineageOut(_Out):
    start: str
    direction: Literal["upstream", "downstream", "both"]
    depth: int
    max_nodes: int
    nodes: list[LineageNodeOut]
    edges: list[EdgeOut]
    truncated: bool = Field(description="True when the depth or max_nodes left reachable nodes out.")
    frontier: list[FrontierOut] = Field(description="Nodes with neighbours left out, and how many each way.")


# --- compare and metrics --------------------------------------------------------------------
class RunColumnOut(_Out):
    id: str
    kind: str
    type: str | None
    name: str | None
    created_at: datetime | None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: float | None = None
    state: str | None = None


class CompareRow(_Out):
    section: Literal["params", "metrics", "code", "environment"]
    key: str
    values: list[Any] = Field(description="One cell per column, null where the column has no value.")
    differs: bool = Field(description="False when every column holds the same value.")


class CompareOut(_Out):
    columns: list[RunColumnOut]
    rows: list[CompareRow]


class SeriesPointOut(_Out):
    step: int | None
    value: Number
    timestamp: datetime | None


class SeriesOut(_Out):
    key: str
    execution_id: str | None
    context_id: str | None
    total: int = Field(description="Samples stored.")
    downsampled: bool
    points: list[SeriesPointOut]


class MetricHistoryOut(_Out):
    key: str
    max_points: int
    series: list[SeriesOut]


# --- diff and impact ------------------------------------------------------------------------
class ValueChangeOut(_Out):
    key: str
    a: Any = Field(description="A's value (null where A lacks it).")
    b: Any = Field(description="B's value (null where B lacks it).")
    change: Literal["added", "removed", "changed"]
    delta: Number | None = Field(None, description="b - a, for numbers.")
    relative: Number | None = Field(None, description="delta / |a|, for numbers (null when a is 0).")


class ArtifactPairOut(_Out):
    role: str
    type: str | None
    status: Literal["same", "equal", "changed", "added", "removed"]
    a: ArtifactOut | None
    b: ArtifactOut | None
    fields: list[ValueChangeOut] = Field([], description="uri, digest, version, name, state, type that differ.")
    properties: list[ValueChangeOut] = Field([], description="Properties that moved, largest relative change first.")


class CacheOriginOut(_Out):
    a_state: str | None
    b_state: str | None
    a_cached_from: str | None
    b_cached_from: str | None
    b_reused_a: bool


class TimingOut(_Out):
    a_seconds: Number | None
    b_seconds: Number | None
    delta_seconds: Number | None


class StepPairOut(_Out):
    key: str = Field(description="The step's place, from the target upstream (<role<Type hops).")
    kind: Literal["lineage", "observer", "consumer"]
    depth: int = Field(description="Steps from the target (its producer is 1); higher is more upstream.")
    type: str | None
    name: str | None
    status: Literal["same", "unchanged", "changed", "added", "removed"]
    a: ExecutionOut | None
    b: ExecutionOut | None
    inputs: list[ArtifactPairOut] = []
    outputs: list[ArtifactPairOut] = []
    parameters: list[ValueChangeOut] = []
    code: list[ValueChangeOut] = []
    environment: list[ValueChangeOut] = []
    state: ValueChangeOut | None = None
    cache: CacheOriginOut | None = None
    timing: TimingOut | None = None


class SliceDeltaOut(_Out):
    slice: str
    a: Number | None
    b: Number | None
    delta: Number | None
    relative: Number | None


class MetricDeltaOut(_Out):
    step: str
    metric: str
    a: Number | None
    b: Number | None
    delta: Number | None
    relative: Number | None
    slices: list[SliceDeltaOut] = Field([], description="Largest drop first.")


class VerdictOut(_Out):
    text: str = Field(description="The most upstream change, why there is no alignment, or that nothing differs.")
    first: str | None = Field(None, description="The key of the step where the first change is.")
    chain: list[str] = Field([], description="What the change flowed through to B.")
    observed: list[str] = Field([], description="What the checks and the target's readers saw change.")
    largest_drop: str | None = None


AnyNodeOut = Annotated[ArtifactOut | ExecutionOut | ContextOut, Field(discriminator="kind")]


class DiffOut(_Out):
    a: AnyNodeOut
    b: AnyNodeOut
    aligned: bool = Field(description="False for two targets of different pipelines: note says why.")
    verdict: VerdictOut
    target: ArtifactPairOut | None = None
    steps: list[StepPairOut] = Field([], description="Aligned steps, most upstream first.")
    metrics: list[MetricDeltaOut] = Field([], description="The targets' metrics side by side, largest drop first.")
    pipelines: dict[str, list[str]] = {}
    counts: dict[str, int] = Field({}, description="Steps per status.")
    note: str | None = None
    truncated: bool = Field(False, description="A lineage walk hit its hop or node limit.")


class ImpactedArtifactOut(_Out):
    artifact: ArtifactOut
    hops: int
    made_by: str | None = Field(description="The type of the step that made it.")
    deployed: bool | None = Field(description="Its pushed/deployed property; null when it has none.")


class ImpactGroupOut(_Out):
    type: str | None
    rank: Literal["deployed", "model", "other"]
    artifacts: list[ImpactedArtifactOut] = Field(description="Nearest first.")


class RetriggeredStepOut(_Out):
    id: str
    name: str
    pipeline: str | None
    policy: str
    slots: dict[str, str] = Field(description="Input slot -> type, the slots the impacted types feed.")
    filters: dict[str, str | None]
    hops: int


class ImpactOut(_Out):
    source: ArtifactOut
    groups: list[ImpactGroupOut] = Field(description="Downstream by type: deployed artifacts, then models, then the rest.")
    executions: list[ExecutionOut] = Field(description="The executions downstream (that read bad data).")
    steps: list[RetriggeredStepOut] = Field(description="Registered steps fixed data would start again.")
    pipelines: list[str]
    counts: dict[str, int] = {}
    truncated: bool = False


# --- events ---------------------------------------------------------------------------------
class RejectedEvent(_Out):
    index: int = Field(description="Position of the event in the request (0-based).")
    event_id: str | None
    kind: str | None
    reason: str


class EventsResult(_Out):
    received: int
    applied: int = Field(description="Events applied to the store now.")
    duplicates: int = Field(description="Events the store already had (idempotent re-delivery).")
    dead_lettered: int = Field(description="Invalid events, kept as dead letters with their reason.")
    published: int = Field(0, description="Events published to Kafka (a server configured with a broker).")
    dead_letters: list[RejectedEvent] = []


class LineageError(_Out):
    index: int = Field(description="Position of the event in the request (0-based).")
    reason: str


class LineageResult(_Out):
    accepted: int = Field(description="OpenLineage events mapped and applied (or already there).")
    rejected: int = Field(description="Events that are not valid OpenLineage run events, kept as dead letters.")
    applied: int = Field(description="metatrail events the accepted ones applied now.")
    duplicates: int = Field(description="metatrail events the store already had (a re-sent event).")
    errors: list[LineageError] = []


class DeadLetterOut(_Out):
    id: int
    source_key: str
    reason: str
    payload_bytes: int
    truncated: bool
    event_id: str | None
    kind: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    created_at: datetime
    replayed_at: datetime | None
    replay_result: str | None


class DeadLetterPage(_Out):
    items: list[DeadLetterOut]
    next_page_token: str | None = None


DeadLetterId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class ReplayRequest(_Out):
    ids: list[DeadLetterId] | None = Field(None, max_length=10_000, description="Dead letters to replay; null: every one not yet in the store.")


class ReplayOutcomeOut(_Out):
    id: int
    source_key: str
    result: str
    done: bool


class ReplayOut(_Out):
    outcomes: list[ReplayOutcomeOut]


# --- cache ----------------------------------------------------------------------------------
class CachedOutput(_Out):
    artifact: ArtifactOut
    role: str


class CachedExecutionOut(_Out):
    execution_id: str
    outputs: list[CachedOutput]
    return_shape: dict[str, Any] | None = None


class CacheLookupOut(_Out):
    fingerprint: str
    candidates: list[CachedExecutionOut] = Field(
        description="Newest first: COMPLETE executions whose outputs are all LIVE. The caller checks "
                    "that local files still exist (the server cannot see them).")


# --- status ---------------------------------------------------------------------------------
class Health(_Out):
    status: Literal["ok", "unavailable"]
    reason: str | None = None


class StatusOut(_Out):
    version: str
    store: dict[str, Any]
    schema_revision: str | None
    schema_head: str | None
    kafka: dict[str, Any] | None
    dead_letters: int | None
    dead_letters_pending: int | None
    auth: str


# --- tokens ---------------------------------------------------------------------------------
class TokenOut(_Out):
    id: str
    name: str | None
    scope: str
    created_at: datetime
    revoked_at: datetime | None


class TokenCreate(_Out):
    scope: Literal["read", "write", "admin"]
    name: str | None = Field(None, max_length=255)


class TokenCreated(TokenOut):
    token: str = Field(description="The token: shown once, only its hash is stored.")


class TokenList(_Out):
    items: list[TokenOut]


RetireOut.model_rebuild()
