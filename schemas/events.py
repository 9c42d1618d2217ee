"""The event contract, version 1.

Every event is a self-describing, immutable fact with a client-assigned ``event_id``. Node
ids (artifacts, executions, contexts, steps, triggers) are assigned by the producer too
(UUIDv7, or UUIDv5 when the id must be derived deterministically), so nothing ever waits
for the store. The consumer applies these facts idempotently and in any order; a field
left ``None`` in a later event means "not said here", never "erase".
"""

from __future__ import annotations

import os
import socket
from datetime import datetime, timezone
from typing import Annotated, Literal, TypeAlias, Union
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from metatrail.schemas.ids import new_id
from metatrail.schemas.values import INT_MAX, INT_MIN, Properties, PropertyName, PropertyType
from metatrail.schemas.version import SCHEMA_VERSION, sdk_version

Name = Annotated[str, Field(min_length=1, max_length=255)]
TypeName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_.:\-]*$")]
Role = Annotated[str, Field(max_length=128)]

ArtifactState: TypeAlias = Literal[
    "UNKNOWN", "PENDING", "LIVE", "MARKED_FOR_DELETION", "DELETED", "ABANDONED", "REFERENCE"
]
#: MLMD's execution states. NEW and UNKNOWN rank lowest, RUNNING next, and the terminal
#: states (COMPLETE, FAILED, CACHED, CANCELED) highest: a late report of an earlier state
#: never undoes an end, and between two terminal reports the later one wins.
ExecutionState: TypeAlias = Literal[
    "UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED"
]
TriggerPolicy: TypeAlias = Literal["each", "latest", "all_new"]
#: MLMD's event types. An INPUT-like type (``*_INPUT``) is an artifact -> execution edge,
#: an OUTPUT-like type an execution -> artifact edge, in lineage as in MLMD.
EdgeType: TypeAlias = Literal[
    "INPUT", "OUTPUT", "DECLARED_INPUT", "DECLARED_OUTPUT", "INTERNAL_INPUT", "INTERNAL_OUTPUT",
    "PENDING_OUTPUT", "UNKNOWN",
]
#: Edge types that may stand in an execution event's ``outputs``; the rest go in ``inputs``
#: (UNKNOWN, MLMD's unset type, is kept as an input).
OUTPUT_EDGE_TYPES = frozenset({"OUTPUT", "DECLARED_OUTPUT", "INTERNAL_OUTPUT", "PENDING_OUTPUT"})
#: An id another system gave the node (MLMD's integer ids), kept to answer its queries.
MlmdId = Annotated[int, Field(ge=0, le=INT_MAX)]
ExternalId = Annotated[str, Field(min_length=1, max_length=255)]


def _utc(value: datetime) -> datetime:
    """The time in UTC. A time whose UTC form falls outside years 1..9999 (year 1 with a
    positive offset, 9999 with a negative one) is a ``ValueError``, which pydantic reports
    as a validation error of the field, not an ``OverflowError`` escaping validation."""
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range once converted to UTC") from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, ser_json_inf_nan="strings")


class ProducerInfo(_Model):
    """Who wrote the event: enough to find the process whose spool holds its siblings."""

    host: Annotated[str, Field(max_length=255)]
    pid: int
    sdk_version: Annotated[str, Field(max_length=64)]

    @classmethod
    def current(cls) -> ProducerInfo:
        """This process (cached until a fork, so a forked child reports its own pid;
        not asked of the kernel per event: ``getpid`` is a system call, and the mapping
        builds several events per OpenLineage event)."""
        if _PRODUCER_INFO:
            return _PRODUCER_INFO[0]
        current = cls(host=socket.gethostname(), pid=os.getpid(), sdk_version=sdk_version())
        _PRODUCER_INFO.append(current)
        return current


_PRODUCER_INFO: list[ProducerInfo] = []
os.register_at_fork(after_in_child=_PRODUCER_INFO.clear)


class ArtifactRef(_Model):
    """An INPUT or OUTPUT edge's far end: an artifact id and the role it plays.

    ``edge_type`` is MLMD's finer event type (DECLARED_OUTPUT, INTERNAL_INPUT, ...) when an
    importer knows it; ``None`` means the plain INPUT or OUTPUT of the list the ref is in.
    An edge is keyed by (execution, direction, artifact, role, edge type)."""

    artifact_id: UUID
    role: Role = ""
    edge_type: EdgeType | None = None
    #: When the edge was recorded, if not at the event's own time (an importer's).
    recorded_at: AwareDatetime | None = None

    _utc_recorded = field_validator("recorded_at")(lambda v: None if v is None else _utc(v))


class CodeVersion(_Model):
    """What code ran: the function's source hash and the repository state around it."""

    source_hash: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    module: str | None = None
    qualname: str | None = None


class Environment(_Model):
    """Where it ran: interpreter, platform, host and versions of key packages."""

    python: str | None = None
    platform: str | None = None
    host: str | None = None
    packages: dict[str, str] = Field(default_factory=dict)


class ErrorInfo(_Model):
    """Why an execution failed."""

    type: Annotated[str, Field(max_length=255)]
    message: str
    traceback: str | None = None


class MetricPoint(_Model):
    """One metric sample. ``value`` may be NaN or +/-Infinity (sent as strings in JSON)."""

    key: Annotated[str, Field(min_length=1, max_length=255)]
    value: float
    step: Annotated[int, Field(ge=INT_MIN, le=INT_MAX)] | None = None
    timestamp: AwareDatetime

    _utc_ts = field_validator("timestamp")(_utc)


class StepInput(_Model):
    """A declared input of a step: an artifact type, optionally narrowed by a filter."""

    type: TypeName
    filter: str | None = None


class _Envelope(_Model):
    """Fields every event carries."""

    event_id: UUID = Field(default_factory=new_id)
    schema_version: str = SCHEMA_VERSION
    occurred_at: AwareDatetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    producer: ProducerInfo = Field(default_factory=lambda: ProducerInfo.current())
    #: Root run context of the work that emitted the event; the Kafka partition key, so one
    #: run's events stay ordered in one partition. ``None`` outside any run.
    run_id: UUID | None = None

    _utc_occurred = field_validator("occurred_at")(_utc)


class TypeRegistered(_Envelope):
    """Declares an artifact, execution or context type and its property kinds."""

    kind: Literal["type.registered"] = "type.registered"
    type_kind: Literal["artifact", "execution", "context"]
    name: TypeName
    properties: dict[PropertyName, PropertyType] = Field(default_factory=dict)
    description: str | None = None
    #: The system-defined base type (MLMD's ``ParentType``: mlmd.Dataset, mlmd.Model, ...).
    base_type: TypeName | None = None


class Origin(_Model):
    """Where an importer found a node: its id in the MLMD store it came from, MLMD's
    ``external_id``, and when the source system created it (the node's ``created_at`` is
    the earliest time any event says; ``updated_at`` the latest)."""

    mlmd_id: MlmdId | None = None
    external_id: ExternalId | None = None
    created_at: AwareDatetime | None = None

    _utc_created = field_validator("created_at")(lambda v: None if v is None else _utc(v))


class ContextUpserted(_Envelope):
    """A pipeline, run, experiment or other grouping, with its parents."""

    kind: Literal["context.upserted"] = "context.upserted"
    context_id: UUID
    type: TypeName
    name: Name
    parent_ids: list[UUID] = Field(default_factory=list)
    properties: Properties = Field(default_factory=dict)
    custom_properties: Properties = Field(default_factory=dict)
    #: Set by importers (MLMD): the node's id and times in the system it came from.
    origin: Origin | None = None


class ArtifactRecorded(_Envelope):
    """An artifact exists (or is about to): its uri, content digest and properties."""

    kind: Literal["artifact.recorded"] = "artifact.recorded"
    artifact_id: UUID
    type: TypeName
    uri: Annotated[str, Field(max_length=2048)]
    digest: Annotated[str, Field(max_length=128)] | None = None
    state: ArtifactState = "LIVE"
    name: Name | None = None
    version: Annotated[str, Field(max_length=128)] | None = None
    properties: Properties = Field(default_factory=dict)
    custom_properties: Properties = Field(default_factory=dict)
    context_ids: list[UUID] = Field(default_factory=list)
    origin: Origin | None = None


class ArtifactStateChanged(_Envelope):
    """An artifact is retired (DELETED, ABANDONED, ...) or revived, with the reason.
    ``custom_properties`` record the circumstances with the artifact (who asked, the bad
    artifact it descends from: ``metatrail impact --retire``); they merge like any other."""

    kind: Literal["artifact.state_changed"] = "artifact.state_changed"
    artifact_id: UUID
    state: ArtifactState
    reason: str | None = None
    custom_properties: Properties = Field(default_factory=dict)


class _ExecutionEvent(_Envelope):
    """What any execution event may say about its execution; ``None`` means "not said"."""

    execution_id: UUID
    type: TypeName | None = None
    name: Name | None = None
    context_ids: list[UUID] = Field(default_factory=list)
    parameters: Properties = Field(default_factory=dict)
    custom_properties: Properties = Field(default_factory=dict)
    code_version: CodeVersion | None = None
    environment: Environment | None = None
    fingerprint: Annotated[str, Field(max_length=128)] | None = None
    trigger_id: UUID | None = None
    inputs: list[ArtifactRef] = Field(default_factory=list)
    outputs: list[ArtifactRef] = Field(default_factory=list)
    origin: Origin | None = None

    @model_validator(mode="after")
    def _edge_types_match_lists(self) -> _ExecutionEvent:
        for ref in self.inputs:
            if ref.edge_type in OUTPUT_EDGE_TYPES:
                raise ValueError(f"an input edge cannot have the output type {ref.edge_type}")
        for ref in self.outputs:
            if ref.edge_type is not None and ref.edge_type not in OUTPUT_EDGE_TYPES:
                raise ValueError(f"an output edge cannot have the input type {ref.edge_type}")
        return self


class ExecutionStarted(_ExecutionEvent):
    kind: Literal["execution.started"] = "execution.started"
    type: TypeName


class ExecutionCompleted(_ExecutionEvent):
    kind: Literal["execution.completed"] = "execution.completed"


class ExecutionFailed(_ExecutionEvent):
    kind: Literal["execution.failed"] = "execution.failed"
    error: ErrorInfo


class ExecutionCached(_ExecutionEvent):
    """The call did not run: an earlier COMPLETE execution's outputs were reused."""

    kind: Literal["execution.cached"] = "execution.cached"
    cached_from: UUID | None = None


class ExecutionRecorded(_ExecutionEvent):
    """An execution as another system reported it (an importer: MLMD, OpenLineage), with
    the state that system gave it, any of ``ExecutionState``, and its times when known.

    The SDK's own life cycle uses the four events above; this one carries what they cannot
    say (NEW, CANCELED, UNKNOWN; a start time other than the event's own)."""

    kind: Literal["execution.recorded"] = "execution.recorded"
    state: ExecutionState
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    error: ErrorInfo | None = None
    cached_from: UUID | None = None

    _utc_started = field_validator("started_at")(lambda v: None if v is None else _utc(v))
    _utc_ended = field_validator("ended_at")(lambda v: None if v is None else _utc(v))


class ContextMembersAdded(_Envelope):
    """Artifacts (attributions) and executions (associations) belong to a context, said
    apart from describing them: an importer reads memberships from their own table. A
    member not recorded yet becomes a placeholder that a later event fills in."""

    kind: Literal["context.members_added"] = "context.members_added"
    context_id: UUID
    artifact_ids: list[UUID] = Field(default_factory=list)
    execution_ids: list[UUID] = Field(default_factory=list)


class MetricsLogged(_Envelope):
    """A batch of metric samples of one execution, or of one context (a run)."""

    kind: Literal["metrics.logged"] = "metrics.logged"
    execution_id: UUID | None = None
    context_id: UUID | None = None
    points: Annotated[list[MetricPoint], Field(min_length=1)]

    @model_validator(mode="after")
    def _has_owner(self) -> MetricsLogged:
        if self.execution_id is None and self.context_id is None:
            raise ValueError("metrics.logged needs an execution_id or a context_id")
        return self


class StepRegistered(_Envelope):
    """A worker declares a pipeline step: what it consumes and when it must run."""

    kind: Literal["step.registered"] = "step.registered"
    step_id: UUID
    name: Name
    pipeline: Name | None = None
    module: Annotated[str, Field(max_length=255)]
    qualname: Annotated[str, Field(max_length=255)]
    inputs: dict[Annotated[str, Field(min_length=1, max_length=128)], StepInput]
    outputs: list[TypeName] = Field(default_factory=list)
    policy: TriggerPolicy = "each"
    code_version: CodeVersion | None = None
    max_retries: int = Field(default=0, ge=0, le=100)


class TriggerRequested(_Envelope):
    """A step must run on these inputs. ``trigger_id`` is derived from (step, input ids)."""

    kind: Literal["trigger.requested"] = "trigger.requested"
    trigger_id: UUID
    step_id: UUID
    step_name: Name
    inputs: dict[Annotated[str, Field(min_length=1, max_length=128)], UUID]
    attempt: int = Field(default=0, ge=0, le=1_000_000)


#: Every event model of this schema version, one per kind.
EVENT_TYPES = (
    TypeRegistered,
    ContextUpserted,
    ArtifactRecorded,
    ArtifactStateChanged,
    ExecutionStarted,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionCached,
    ExecutionRecorded,
    ContextMembersAdded,
    MetricsLogged,
    StepRegistered,
    TriggerRequested,
)
Event = Annotated[Union[EVENT_TYPES], Field(discriminator="kind")]  # type: ignore[valid-type]

#: kind -> model.
EVENT_MODELS: dict[str, type[_Envelope]] = {m.model_fields["kind"].default: m for m in EVENT_TYPES}
EVENT_KINDS: frozenset[str] = frozenset(EVENT_MODELS)
EXECUTION_EVENT_TYPES = (
    ExecutionStarted,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionCached,
    ExecutionRecorded,
)
