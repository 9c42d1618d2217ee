"""Reads the orchestration side needs from the store, as query domain objects.

Used by the worker (resolve a trigger's input ids), by the producer's cache lookup and by
warm start (``metatrail.producer.latest``). Reads only; every function takes an open session.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlparse

from sqlalchemy import Engine, and_, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.pool import QueuePool

from metatrail.consumer.query.domain import Artifact
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.models import (
    ArtifactPropertyRow,
    ArtifactRow,
    EdgeRow,
    ExecutionPropertyRow,
    ExecutionRow,
)
from metatrail.consumer.triggers.candidates import newest
from metatrail.schemas.events import StepInput
from metatrail.schemas.reserved import RETURN_SHAPE

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def shared_engine(url: str) -> Engine:
    """One engine per store URL for this process (lookups are frequent and small). Its
    connections are pooled, SQLite files included (saves a connect per lookup)."""
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            kwargs: dict[str, Any] = {}
            if url.startswith("sqlite"):
                kwargs = {"poolclass": QueuePool, "pool_size": 4, "max_overflow": 8}
            engine = _engines[url] = open_engine(url, **kwargs)
        return engine


def dispose_shared_engines() -> None:
    """Close every shared engine (tests, process shutdown)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _property_value(row: Any) -> Any:
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


def unusable(artifact: Artifact, check_files: bool = True) -> str | None:
    """Why a cached output cannot be reused (not LIVE, never recorded, its local file
    gone), or None when it can. ``check_files=False``: a server, which cannot see the
    caller's files, leaves that check to the caller."""
    if artifact.is_placeholder:
        return "was never recorded"
    if artifact.state != "LIVE":
        return f"is {artifact.state}"
    if not check_files:
        return None
    path = local_path(artifact.uri)
    if path is not None and not os.path.exists(path):
        return f"file {path} no longer exists"
    return None


def _unusable_outputs(
    stored: list[tuple[Artifact | None, str]], check: Callable[[Artifact], str | None] | None,
    check_files: bool = True,
) -> str | None:
    for art, role in stored:
        reason = "is missing" if art is None else unusable(art, check_files)
        if reason is None and art is not None and check is not None:
            reason = check(art)
        if reason is not None:
            return f"output {role!r} {reason}"
    return None


@dataclass(frozen=True)
class CachedExecution:
    """A reusable execution: its id, its outputs with roles, and the ``RETURN_SHAPE``
    bookkeeping property ``@track`` stored to rebuild the return value (None if absent)."""

    execution_id: str
    outputs: list[tuple[Artifact, str]]
    return_shape: dict[str, Any] | None = None


@functools.cache
def _cache_statements() -> tuple[Any, Any, Any]:
    """The cache lookup's three statements, built once (bound parameters), so a lookup
    costs their execution only: this is on the path of every ``@track(cache=True)`` call."""
    x, e, a = ExecutionRow.__table__, EdgeRow.__table__, ArtifactRow.__table__
    newest_runs = (
        select(x.c.id, x.c.created_at)
        .where(x.c.fingerprint == bindparam("fingerprint"), x.c.state == "COMPLETE")
        .order_by(x.c.created_at.desc(), x.c.id.desc())
        .limit(bindparam("candidates"))
        .subquery()
    )
    runs = (
        select(newest_runs.c.id.label("execution_id"), e.c.role, a)
        .select_from(newest_runs)
        .outerjoin(e, and_(e.c.execution_id == newest_runs.c.id, e.c.direction == "OUTPUT"))
        .outerjoin(a, a.c.id == e.c.artifact_id)
        .order_by(newest_runs.c.created_at.desc(), newest_runs.c.id.desc(), e.c.role, e.c.artifact_id)
    )
    p = ArtifactPropertyRow.__table__
    props = select(p).where(p.c.node_id.in_(bindparam("ids", expanding=True)))
    xp = ExecutionPropertyRow.__table__
    shape = select(xp.c.json_value).where(
        xp.c.node_id == bindparam("execution_id"), xp.c.is_custom.is_(True), xp.c.name == RETURN_SHAPE
    )
    return runs, props, shape


def find_cached_execution(
    session: Session,
    fingerprint: str,
    *,
    candidates: int = 5,
    check: Callable[[Artifact], str | None] | None = None,
    misses: list[str] | None = None,
) -> CachedExecution | None:
    """The newest COMPLETE execution with this fingerprint whose outputs are all reusable;
    None when there is none. Looks at the ``candidates`` newest matches only, in one
    indexed query (fingerprint, state), plus two for the chosen one's details.

    An output is reusable when it is LIVE and its local file (if any) exists, and
    ``check(output)`` (if given) returns None rather than a reason (the producer checks
    the file's content there). ``misses``, if given, gets one line per candidate passed
    over, saying why."""
    found = cached_executions(session, fingerprint, candidates=candidates, check=check, misses=misses)
    return found[0] if found else None


def cached_executions(
    session: Session,
    fingerprint: str,
    *,
    candidates: int = 5,
    check: Callable[[Artifact], str | None] | None = None,
    misses: list[str] | None = None,
    check_files: bool = True,
    limit: int = 1,
) -> list[CachedExecution]:
    """Up to ``limit`` of the ``candidates`` newest COMPLETE executions with this
    fingerprint whose outputs are all reusable (see ``find_cached_execution``), newest
    first. The team server asks with ``check_files=False`` and several candidates."""
    runs, props_stmt, shape_stmt = _cache_statements()
    found: list[CachedExecution] = []
    conn = session.connection()
    rows = conn.execute(runs, {"fingerprint": fingerprint, "candidates": candidates}).all()
    by_run: dict[str, list[Any]] = {}
    for row in rows:
        by_run.setdefault(row.execution_id, []).append(row)
    for execution_id, outputs in by_run.items():
        if outputs[0].role is None:  # no OUTPUT edge at all: nothing to reuse
            continue
        stored = [(_artifact_of(r), r.role) for r in outputs]
        reason = _unusable_outputs(stored, check, check_files)
        if reason is not None:
            if misses is not None:
                misses.append(f"execution {execution_id}: {reason}")
            continue
        ids = [art.id for art, _ in stored if art is not None]
        props: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {i: ({}, {}) for i in ids}
        for p in conn.execute(props_stmt, {"ids": ids}):
            props[p.node_id][1 if p.is_custom else 0][p.name] = _property_value(p)
        shape = conn.execute(shape_stmt, {"execution_id": execution_id}).scalar()
        outs = [
            (replace(art, properties=props[art.id][0], custom_properties=props[art.id][1]), role)
            for art, role in stored
            if art is not None
        ]
        found.append(CachedExecution(execution_id, outs, shape if isinstance(shape, dict) else None))
        if len(found) >= limit:
            break
    return found


def _artifact_of(row: Any) -> Artifact | None:
    if row.id is None:
        return None
    return Artifact(
        id=row.id, type=row.type, name=row.name, uri=row.uri, state=row.state, digest=row.digest,
        version=row.version, state_reason=row.state_reason, is_placeholder=row.is_placeholder,
        created_at=row.created_at, updated_at=row.updated_at,
    )


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
