"""Which LIVE artifacts can fill a step's input slot: type, optional filter, pipeline.

A slot is ``StepInput(type, filter)``; a step may belong to a pipeline, whose context
(type ``Pipeline``, named after it, as ``metatrail.producer.run(pipeline=...)`` makes it) scopes
its candidates: a step of pipeline ``p`` only consumes artifacts attributed to ``p``. "Newest" orders by ``created_at`` then id (ids are
time-ordered UUIDv7s), so ties break the same way on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, select, true
from sqlalchemy.orm import Session

from metatrail.consumer.store.models import (
    ArtifactRow,
    AttributionRow,
    EdgeRow,
    ExecutionRow,
    TriggerOutboxRow,
)
from metatrail.schemas.events import StepInput
from metatrail.schemas.ids import context_id

#: Context type of a pipeline; ``metatrail.producer.run(pipeline=...)`` attributes artifacts to it.
PIPELINE_CONTEXT_TYPE = "Pipeline"


def filter_clause(text: str | None, dialect: str) -> ColumnElement[bool]:
    """The SQL condition of a step input's filter over ``mt_artifacts`` (the query
    language of :mod:`metatrail.consumer.query`). Raises ``FilterError`` on a malformed filter."""
    if not text:
        return true()
    from metatrail.consumer.query.compile import ARTIFACT, Compiler
    from metatrail.consumer.query.filters import parse_filter

    return Compiler(dialect).compile(parse_filter(text), ARTIFACT)


def not_output_of(step: str) -> ColumnElement[bool]:
    """The artifact is not an output of a triggered run of ``step``: a step whose output
    type is also its input type (Dataset -> Dataset) must not trigger itself forever."""
    x, o = ExecutionRow.__table__, TriggerOutboxRow.__table__
    return ~exists().where(
        EdgeRow.artifact_id == ArtifactRow.id,
        EdgeRow.direction == "OUTPUT",
        x.c.id == EdgeRow.execution_id,
        o.c.trigger_id == x.c.trigger_id,
        o.c.step_id == step,
    )


def slot_clause(
    slot: StepInput, pipeline: str | None, dialect: str, step: str | None = None
) -> ColumnElement[bool]:
    """Every condition an artifact must meet to fill ``slot`` of ``step`` in ``pipeline``."""
    parts: list[ColumnElement[bool]] = [
        ArtifactRow.type == slot.type,
        ArtifactRow.state == "LIVE",
        ArtifactRow.is_placeholder.is_(False),
        filter_clause(slot.filter, dialect),
    ]
    if pipeline:
        ctx = str(context_id(PIPELINE_CONTEXT_TYPE, pipeline))
        parts.append(
            ArtifactRow.id.in_(
                select(AttributionRow.artifact_id).where(AttributionRow.context_id == ctx)
            )
        )
    if step is not None:
        parts.append(not_output_of(step))
    return and_(*parts)


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def matching(
    session: Session, slot: StepInput, pipeline: str | None, ids: Sequence[str], step: str | None = None
) -> list[ArtifactRow]:
    """The artifacts among ``ids`` that fit ``slot``, oldest first."""
    if not ids:
        return []
    rows = session.scalars(
        select(ArtifactRow)
        .where(ArtifactRow.id.in_(list(ids)), slot_clause(slot, pipeline, _dialect(session), step))
        .order_by(ArtifactRow.created_at, ArtifactRow.id)
    )
    return list(rows)


def newest(
    session: Session, slot: StepInput, pipeline: str | None, step: str | None = None
) -> ArtifactRow | None:
    """The newest artifact that fits ``slot`` (of ``step``, when given) now, or None."""
    return session.scalars(
        select(ArtifactRow)
        .where(slot_clause(slot, pipeline, _dialect(session), step))
        .order_by(ArtifactRow.created_at.desc(), ArtifactRow.id.desc())
        .limit(1)
    ).first()


def created_at_of(session: Session, artifact_ids: Sequence[str]) -> dict[str, Any]:
    """``created_at`` of each of these artifacts that exists."""
    if not artifact_ids:
        return {}
    rows = session.execute(
        select(ArtifactRow.id, ArtifactRow.created_at).where(ArtifactRow.id.in_(list(artifact_ids)))
    )
    return {r.id: r.created_at for r in rows}
