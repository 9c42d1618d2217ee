"""SQLAlchemy rows of the lineage store (MLMD-equivalent in meaning).

These rows never leave ``consumer``: the apply code writes them and the query code turns
them into domain objects. Every node has a client-assigned UUID primary key. Merging is
order-insensitive: each mergeable field group carries the (occurred_at, event_id) stamp of
the event that last set it, and a later-stamped event wins (last writer wins).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Double,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql.compiler import DDLCompiler

from metatrail.consumer.store.types import ID_LEN, JSONText, LongBinary, LongText, UTCDateTime, binary_collation

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

#: Characters of a string property kept in the indexed ``string_key`` column.
STRING_KEY_LEN = 191


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


@compiles(CreateTable, "mysql")
@compiles(CreateTable, "mariadb")
def _binary_text_tables(create: CreateTable, compiler: DDLCompiler, **kw: Any) -> str:
    """Every table of these models is created on MySQL/MariaDB with the binary, NO PAD
    collation (``types.binary_collation``): every name, key and property column compares
    exactly, as on the other backends. Migration 0004 converts the tables of stores made
    before; tables of other metadata are left as they are."""
    ddl: str = compiler.visit_create_table(create, **kw)
    if create.element.metadata is not Base.metadata:
        return ddl
    return f"{ddl.rstrip()} DEFAULT CHARSET=utf8mb4 COLLATE={binary_collation(compiler.dialect)}\n\n"


def _id(primary_key: bool = False, nullable: bool = False) -> Mapped[Any]:
    return mapped_column(String(ID_LEN), primary_key=primary_key, nullable=nullable)


class _Stamped:
    """Per-field last-writer-wins stamps: field -> "<occurred_at ISO>Z|<event_id>" of the
    event that set it (the state field prefixes its lattice rank). An event that does not
    mention a field never touches it, so the merge is order-insensitive field by field."""

    field_stamps: Mapped[dict[str, str]] = mapped_column(JSONText(), default=dict)


class _PropertyDocument:
    """Every property of the node as one JSON text, ``[{properties}, {custom_properties}]``
    with plain values and sorted keys, kept equal to the typed property rows by apply in
    the same transaction. Why: reading a node's properties from the typed rows costs a
    row (and Python work) per property; queries returning thousands of nodes read this
    with one parse instead. Filters keep using the indexed typed rows. NULL: no
    properties. Non-finite floats are written as Python's JSON writes them (NaN,
    Infinity, -Infinity)."""

    properties_doc: Mapped[str | None] = mapped_column(LongText())


class _Origin:
    """Where an imported node came from: its id in the MLMD store (MLMD-syntax filters
    compare ``id`` with it) and MLMD's ``external_id``. NULL for nodes metatrail recorded."""

    mlmd_id: Mapped[int | None] = mapped_column(BigInteger)
    external_id: Mapped[str | None] = mapped_column(String(255))


def _origin_indexes() -> tuple[Index, ...]:
    return (Index(None, "mlmd_id"), Index(None, "external_id"))


class TypeRow(Base):
    """An artifact, execution or context type and the property kinds seen or declared."""

    __tablename__ = "mt_types"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    properties: Mapped[dict[str, str]] = mapped_column(JSONText(), default=dict)
    description: Mapped[str | None] = mapped_column(Text)
    #: The system-defined base type (MLMD's ParentType: mlmd.Dataset, mlmd.Model, ...).
    base_type: Mapped[str | None] = mapped_column(String(128))


class ContextRow(_Stamped, _PropertyDocument, _Origin, Base):
    """A pipeline, run, experiment or other grouping."""

    __tablename__ = "mt_contexts"
    id: Mapped[str] = _id(primary_key=True)
    type: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(255))
    is_placeholder: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(None, "type", "name"),
        Index(None, "name"),
        Index(None, "type", "created_at"),
        *_origin_indexes(),
    )


class ParentContextRow(Base):
    __tablename__ = "mt_parent_contexts"
    context_id: Mapped[str] = _id(primary_key=True)
    parent_id: Mapped[str] = _id(primary_key=True)
    __table_args__ = (Index(None, "parent_id"),)


class ArtifactRow(_Stamped, _PropertyDocument, _Origin, Base):
    """A file, table, model or any other thing an execution reads or writes."""

    __tablename__ = "mt_artifacts"
    id: Mapped[str] = _id(primary_key=True)
    type: Mapped[str | None] = mapped_column(String(128))
    uri: Mapped[str | None] = mapped_column(String(2048))
    digest: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(255))
    version: Mapped[str | None] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(String(24), default="UNKNOWN")
    state_reason: Mapped[str | None] = mapped_column(Text)
    is_placeholder: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(None, "type", "state", "created_at"),
        Index(None, "created_at"),
        Index(None, "name", "version"),
        Index(None, "uri", mysql_length=255),
        Index(None, "digest"),
        *_origin_indexes(),
    )


class ExecutionRow(_Stamped, _PropertyDocument, _Origin, Base):
    """One run of a component / tracked function."""

    __tablename__ = "mt_executions"
    id: Mapped[str] = _id(primary_key=True)
    type: Mapped[str | None] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="UNKNOWN")
    state_rank: Mapped[int] = mapped_column(SmallInteger, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    fingerprint: Mapped[str | None] = mapped_column(String(128))
    trigger_id: Mapped[str | None] = mapped_column(String(ID_LEN))
    cached_from: Mapped[str | None] = mapped_column(String(ID_LEN))
    code_version: Mapped[dict[str, Any] | None] = mapped_column(JSONText())
    environment: Mapped[dict[str, Any] | None] = mapped_column(JSONText())
    error_type: Mapped[str | None] = mapped_column(String(255))
    error_message: Mapped[str | None] = mapped_column(LongText())
    error_traceback: Mapped[str | None] = mapped_column(LongText())
    is_placeholder: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The process that started it (host and pid of its ``execution.started`` event): a
    #: RUNNING execution whose process is gone on the same host is abandoned (stale).
    producer_host: Mapped[str | None] = mapped_column(String(255))
    producer_pid: Mapped[int | None] = mapped_column(Integer)
    #: The latest ``occurred_at`` of any event about it (its own or its metrics): a RUNNING
    #: execution silent for longer than METATRAIL_EXECUTION_STALE_AFTER_S is stale.
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        Index(None, "type", "state", "created_at"),
        Index(None, "created_at"),
        Index(None, "fingerprint", "state"),
        Index(None, "trigger_id"),
        Index(None, "state", "last_event_at"),
        *_origin_indexes(),
    )


class EdgeRow(Base):
    """An MLMD event: an INPUT (artifact -> execution) or OUTPUT (execution -> artifact)
    edge with the role the artifact plays. Edges are a set: the key is the whole edge.
    ``edge_type`` is MLMD's event type: INPUT or OUTPUT (the direction) for plain edges,
    or a finer one (DECLARED_OUTPUT, INTERNAL_INPUT, PENDING_OUTPUT...) whose direction
    is its suffix's; lineage follows every type by its direction, as MLMD does."""

    __tablename__ = "mt_edges"
    execution_id: Mapped[str] = _id(primary_key=True)
    direction: Mapped[str] = mapped_column(String(6), primary_key=True)
    artifact_id: Mapped[str] = _id(primary_key=True)
    role: Mapped[str] = mapped_column(String(128), primary_key=True, default="")
    edge_type: Mapped[str] = mapped_column(String(16), primary_key=True)
    created_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "artifact_id", "direction", "execution_id"),)


class AttributionRow(Base):
    """Artifact belongs to context."""

    __tablename__ = "mt_attributions"
    context_id: Mapped[str] = _id(primary_key=True)
    artifact_id: Mapped[str] = _id(primary_key=True)
    __table_args__ = (Index(None, "artifact_id"),)


class AssociationRow(Base):
    """Execution belongs to context."""

    __tablename__ = "mt_associations"
    context_id: Mapped[str] = _id(primary_key=True)
    execution_id: Mapped[str] = _id(primary_key=True)
    __table_args__ = (Index(None, "execution_id"),)


class _PropertyColumns:
    """A typed property value spread over typed, indexable columns.

    ``double_value`` holds ints and floats alike so numeric comparisons use one index;
    ``string_key`` holds the first ``STRING_KEY_LEN`` characters of a string so equality
    and range filters use an index on every backend, ``string_value`` the whole string.
    """

    node_id: Mapped[str] = _id(primary_key=True)
    is_custom: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    value_type: Mapped[str] = mapped_column(String(8))
    int_value: Mapped[int | None] = mapped_column(BigInteger)
    double_value: Mapped[float | None] = mapped_column(Double())
    string_key: Mapped[str | None] = mapped_column(String(STRING_KEY_LEN))
    string_value: Mapped[str | None] = mapped_column(LongText())
    bool_value: Mapped[bool | None] = mapped_column(Boolean)
    json_value: Mapped[Any] = mapped_column(JSONText(), nullable=True)
    stamp_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stamp_event: Mapped[str] = mapped_column(String(ID_LEN))


def _property_indexes() -> tuple[Index, ...]:
    """The value indexes filters search. A row holds one kind of value, so the number and
    bool indexes cover only rows that hold one (partial, where the backend has partial
    indexes: PostgreSQL and SQLite); whole, they took an entry for every JSON and string
    row too (an OpenLineage facet is a JSON row), 6-9% of PostgreSQL's ingest work. A
    comparison on the column implies it is not NULL, so filters still use them. The
    string index stays whole: it is also the (name, is_custom) index that existence
    filters (``IS NOT NULL``, ``!=``) search."""
    return (
        Index(None, "name", "is_custom", "double_value", **_where_not_null("double_value")),
        Index(None, "name", "is_custom", "string_key"),
        Index(None, "name", "is_custom", "bool_value", **_where_not_null("bool_value")),
    )


def _where_not_null(column: str) -> dict[str, Any]:
    predicate = text(f"{column} IS NOT NULL")
    return {"postgresql_where": predicate, "sqlite_where": predicate}


class ArtifactPropertyRow(_PropertyColumns, Base):
    __tablename__ = "mt_artifact_properties"
    __table_args__ = _property_indexes()


class ExecutionPropertyRow(_PropertyColumns, Base):
    """Execution properties are its parameters; custom properties anything else."""

    __tablename__ = "mt_execution_properties"
    __table_args__ = _property_indexes()


class ContextPropertyRow(_PropertyColumns, Base):
    __tablename__ = "mt_context_properties"
    __table_args__ = _property_indexes()


class MetricRow(Base):
    """One metric sample of an execution or of a context. Keyed by the event that carried
    it and its position there, so a redelivered event cannot add a sample twice."""

    __tablename__ = "mt_metrics"
    event_id: Mapped[str] = _id(primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    execution_id: Mapped[str | None] = _id(nullable=True)
    context_id: Mapped[str | None] = _id(nullable=True)
    key: Mapped[str] = mapped_column(String(255))
    step: Mapped[int | None] = mapped_column(BigInteger)
    value: Mapped[float | None] = mapped_column(Double())
    #: 'nan', 'inf' or '-inf' when the value is not finite (MySQL cannot store those).
    nonfinite: Mapped[str | None] = mapped_column(String(4))
    timestamp: Mapped[datetime] = mapped_column(UTCDateTime())

    # The owner indexes carry the value too, so a chart's downsampling aggregates
    # (per-bucket minimum and maximum over 100,000 samples) read the index alone.
    __table_args__ = (
        Index(None, "execution_id", "key", "step", "value", "nonfinite"),
        Index(None, "context_id", "key", "step", "value", "nonfinite"),
        Index(None, "key", "timestamp"),
    )


class AppliedEventRow(Base):
    """Every applied event id, written in the same transaction as its effects (rule 2)."""

    __tablename__ = "mt_applied_events"
    event_id: Mapped[str] = _id(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "applied_at"),)


class DeadLetterRow(Base):
    """Input that could not be applied, with why and where it came from (rule 5)."""

    __tablename__ = "mt_dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    #: Where the input came from, unique so a redelivered poison message is stored once:
    #: 'kafka:<topic>:<partition>:<offset>', 'file:<path>:<line>', 'event:<event_id>'.
    source_key: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(LongText())
    payload: Mapped[bytes] = mapped_column(LongBinary())
    payload_bytes: Mapped[int] = mapped_column(BigInteger)
    truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    event_id: Mapped[str | None] = _id(nullable=True)
    kind: Mapped[str | None] = mapped_column(String(64))
    topic: Mapped[str | None] = mapped_column(String(255))
    partition: Mapped[int | None] = mapped_column(Integer)
    offset: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    replayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    replay_result: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("source_key"), Index(None, "created_at"))


class StepRow(_Stamped, Base):
    """A registered pipeline step (the consumer never imports user code)."""

    __tablename__ = "mt_steps"
    id: Mapped[str] = _id(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    pipeline: Mapped[str | None] = mapped_column(String(255))
    module: Mapped[str] = mapped_column(String(255))
    qualname: Mapped[str] = mapped_column(String(255))
    inputs: Mapped[dict[str, Any]] = mapped_column(JSONText())
    outputs: Mapped[list[str]] = mapped_column(JSONText())
    policy: Mapped[str] = mapped_column(String(16))
    code_version: Mapped[dict[str, Any] | None] = mapped_column(JSONText())
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class TriggerOutboxRow(Base):
    """A step that must run on these inputs. The key is the deterministic trigger id, so a
    second request for the same work is a no-op (rule 7); the relay sets ``sent_at``."""

    __tablename__ = "mt_trigger_outbox"
    trigger_id: Mapped[str] = _id(primary_key=True)
    step_id: Mapped[str] = _id()
    step_name: Mapped[str] = mapped_column(String(255))
    inputs: Mapped[dict[str, str]] = mapped_column(JSONText())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index(None, "sent_at", "created_at"), Index(None, "step_id", "created_at"))


class StepPendingRow(Base):
    """The newest input set a ``latest``-policy step waits to run on. A newer input set
    replaces it (coalescing a burst into one run); the relay turns it into an outbox row
    once the step has no trigger in flight."""

    __tablename__ = "mt_step_pending"
    step_id: Mapped[str] = _id(primary_key=True)
    trigger_id: Mapped[str] = _id()
    inputs: Mapped[dict[str, str]] = mapped_column(JSONText())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TriggerClaimRow(Base):
    """A worker's claim on one attempt of a trigger: the key makes a second claim (another
    worker, a redelivery, a republished trigger) a no-op, so the step runs once."""

    __tablename__ = "mt_trigger_claims"
    trigger_id: Mapped[str] = _id(primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    worker: Mapped[str] = mapped_column(String(255))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: When the worker finished the attempt, and how ('ran', 'failed', ...).
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    outcome: Mapped[str | None] = mapped_column(String(16))


class TokenRow(Base):
    """An API token of the team server (``metatrail token create``). Only the SHA-256 of
    the token is stored: the token itself is shown once, when it is created."""

    __tablename__ = "mt_tokens"
    id: Mapped[str] = _id(primary_key=True)
    name: Mapped[str | None] = mapped_column(String(255))
    #: 'read', 'write' or 'admin' (each includes the ones before it).
    scope: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("token_hash"),)
