"""Reads the orchestration side needs from the store, as query domain objects.

Used by the worker (resolve a trigger's input ids), by the producer's cache lookup and by
warm start (``producer.latest``). Reads only; every function takes an open session.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from consumer.query.domain import Artifact
from consumer.store.engine import open_engine
from consumer.store.models import ArtifactPropertyRow, ArtifactRow, EdgeRow, ExecutionRow
from consumer.triggers.candidates import newest
from schemas.events import StepInput

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def shared_engine(url: str) -> Engine:
    """One engine per store URL for this process (lookups are frequent and small)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = open_engine(url)
        return engine


def dispose_shared_engines() -> None:
    """Close every shared engine (tests, process shutdown)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _property_value(row: ArtifactPropertyRow) -> Any:
    kind = row.value_type
    if kind == "int":
        return row.int_value
    if kind == "float":
        if row.double_value is None and isinstance(row.json_value, str):
            return float(row.json_value)
        return row.double_value
    if kind == "string":
        return row.string_value
    if kind == "bool":
        return row.bool_value
    return row.json_value


def load_artifacts(session: Session, ids: Sequence[str]) -> dict[str, Artifact]:
    """The artifacts with these ids that exist (placeholders included), by id."""
    if not ids:
        return {}
    rows = list(session.scalars(select(ArtifactRow).where(ArtifactRow.id.in_(list(ids)))))
    props: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {r.id: ({}, {}) for r in rows}
    for p in session.scalars(
        select(ArtifactPropertyRow).where(ArtifactPropertyRow.node_id.in_(list(props)))
    ):
        props[p.node_id][1 if p.is_custom else 0][p.name] = _property_value(p)
    return {
        r.id: Artifact(
            id=r.id,
            type=r.type,
            name=r.name,
            uri=r.uri,
            state=r.state,
            digest=r.digest,
            version=r.version,
            state_reason=r.state_reason,
            is_placeholder=r.is_placeholder,
            created_at=r.created_at,
            updated_at=r.updated_at,
            properties=props[r.id][0],
            custom_properties=props[r.id][1],
        )
        for r in rows
    }


def local_path(uri: str | None) -> str | None:
    """The local file path of a ``file://`` or scheme-less uri, else None."""
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return unquote(parsed.path)
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return uri
    return None


def reusable(artifact: Artifact) -> bool:
    """Whether a cached output can be reused: LIVE, and its local file (if any) exists."""
    if artifact.state != "LIVE" or artifact.is_placeholder:
        return False
    path = local_path(artifact.uri)
    return path is None or os.path.exists(path)


def find_cached_execution(
    session: Session, fingerprint: str, *, candidates: int = 5
) -> tuple[str, list[tuple[Artifact, str]]] | None:
    """The newest COMPLETE execution with this fingerprint whose outputs are all reusable,
    as (execution id, [(output artifact, role)]); None when there is none. Looks at the
    ``candidates`` newest matches only (index on fingerprint, state)."""
    execution_ids = list(
        session.scalars(
            select(ExecutionRow.id)
            .where(ExecutionRow.fingerprint == fingerprint, ExecutionRow.state == "COMPLETE")
            .order_by(ExecutionRow.created_at.desc(), ExecutionRow.id.desc())
            .limit(candidates)
        )
    )
    for execution_id in execution_ids:
        edges = list(
            session.execute(
                select(EdgeRow.artifact_id, EdgeRow.role).where(
                    EdgeRow.execution_id == execution_id, EdgeRow.direction == "OUTPUT"
                ).order_by(EdgeRow.role, EdgeRow.artifact_id)
            )
        )
        artifacts = load_artifacts(session, [e.artifact_id for e in edges])
        outputs = [(artifacts.get(e.artifact_id), e.role) for e in edges]
        if all(a is not None and reusable(a) for a, _ in outputs):
            return execution_id, [(a, role) for a, role in outputs if a is not None]
    return None


def newest_artifact(session: Session, type_name: str, pipeline: str | None = None) -> Artifact | None:
    """The newest LIVE artifact of a type (in a pipeline's context when given)."""
    row = newest(session, StepInput(type=type_name), pipeline)
    if row is None:
        return None
    return load_artifacts(session, [row.id]).get(row.id)


def execution_for_trigger(session: Session, trigger: str, states: Sequence[str]) -> str | None:
    """An execution recorded for this trigger id in one of ``states``, if any."""
    return session.scalars(
        select(ExecutionRow.id)
        .where(ExecutionRow.trigger_id == trigger, ExecutionRow.state.in_(list(states)))
        .order_by(ExecutionRow.created_at.desc())
        .limit(1)
    ).first()
