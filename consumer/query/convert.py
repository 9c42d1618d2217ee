"""Rows to domain objects, loaded in batches (one query per table per chunk of ids)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Connection, Table, select

from consumer.query.compile import ARTIFACT, CONTEXT, EXECUTION, Entity
from consumer.query.domain import Artifact, Context, Execution, MetricPoint
from consumer.store import models as m

#: Ids per IN list (well under every backend's bound-parameter limit).
CHUNK = 500


def chunks(ids: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def property_value(row: Any) -> Any:
    """The Python value of a property row."""
    t = row.value_type
    if t == "int":
        return row.int_value if row.int_value is not None else int(row.double_value)
    if t == "float":
        if row.double_value is not None:
            return float(row.double_value)
        return float(row.json_value) if row.json_value is not None else None
    if t == "string":
        return row.string_value
    if t == "bool":
        return None if row.bool_value is None else bool(row.bool_value)
    return row.json_value


def metric_value(value: float | None, nonfinite: str | None) -> float:
    if value is not None:
        return float(value)
    return float(nonfinite or "nan")


def load_properties(conn: Connection, props: Table, ids: Sequence[str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """node id -> (properties, custom_properties), keys sorted."""
    found: dict[str, tuple[dict[str, Any], dict[str, Any]]] = defaultdict(lambda: ({}, {}))
    for part in chunks(list(ids)):
        rows = conn.execute(select(props).where(props.c.node_id.in_(part)).order_by(props.c.node_id, props.c.name))
        for row in rows:
            found[row.node_id][1 if row.is_custom else 0][row.name] = property_value(row)
    return found


def _artifact(row: Any, props: tuple[dict[str, Any], dict[str, Any]]) -> Artifact:
    return Artifact(
        id=row.id, type=row.type, name=row.name, uri=row.uri, state=row.state, digest=row.digest,
        version=row.version, state_reason=row.state_reason, is_placeholder=bool(row.is_placeholder),
        created_at=row.created_at, updated_at=row.updated_at, properties=props[0], custom_properties=props[1],
    )


def _execution(row: Any, props: tuple[dict[str, Any], dict[str, Any]]) -> Execution:
    return Execution(
        id=row.id, type=row.type, name=row.name, state=row.state, started_at=row.started_at,
        ended_at=row.ended_at, fingerprint=row.fingerprint, cached_from=row.cached_from,
        trigger_id=row.trigger_id, code_version=row.code_version, environment=row.environment,
        error_type=row.error_type, error_message=row.error_message,
        is_placeholder=bool(row.is_placeholder), created_at=row.created_at, updated_at=row.updated_at,
        properties=props[0], custom_properties=props[1],
    )


def _context(row: Any, props: tuple[dict[str, Any], dict[str, Any]], parents: tuple[str, ...]) -> Context:
    return Context(
        id=row.id, type=row.type, name=row.name, is_placeholder=bool(row.is_placeholder),
        created_at=row.created_at, updated_at=row.updated_at, parent_ids=parents,
        properties=props[0], custom_properties=props[1],
    )


def _artifact_columns() -> list[Any]:
    t = ARTIFACT.table
    return [t.c[n] for n in ("id", "type", "name", "uri", "state", "digest", "version", "state_reason",
                             "is_placeholder", "created_at", "updated_at")]


def _execution_columns() -> list[Any]:
    t = EXECUTION.table
    return [t.c[n] for n in ("id", "type", "name", "state", "started_at", "ended_at", "fingerprint",
                             "cached_from", "trigger_id", "code_version", "environment", "error_type",
                             "error_message", "is_placeholder", "created_at", "updated_at")]


def _context_columns() -> list[Any]:
    t = CONTEXT.table
    return [t.c[n] for n in ("id", "type", "name", "is_placeholder", "created_at", "updated_at")]


COLUMNS = {"artifact": _artifact_columns, "execution": _execution_columns, "context": _context_columns}


def build_nodes(conn: Connection, entity: Entity, rows: Sequence[Any]) -> list[Any]:
    """Domain objects for already-fetched node rows (in the same order), with properties."""
    ids = [r.id for r in rows]
    props = load_properties(conn, entity.props, ids)
    empty: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    if entity is ARTIFACT:
        return [_artifact(r, props.get(r.id, empty)) for r in rows]
    if entity is EXECUTION:
        return [_execution(r, props.get(r.id, empty)) for r in rows]
    parents: dict[str, list[str]] = defaultdict(list)
    pc = m.ParentContextRow.__table__
    for part in chunks(ids):
        for row in conn.execute(select(pc).where(pc.c.context_id.in_(part)).order_by(pc.c.parent_id)):
            parents[row.context_id].append(row.parent_id)
    return [_context(r, props.get(r.id, empty), tuple(parents.get(r.id, ()))) for r in rows]


def load_nodes(conn: Connection, entity: Entity, ids: Sequence[str]) -> dict[str, Any]:
    """id -> domain object for the ids that exist."""
    rows: list[Any] = []
    cols = COLUMNS[entity.kind]()
    for part in chunks(list(ids)):
        rows.extend(conn.execute(select(*cols).where(entity.table.c.id.in_(part))))
    return {n.id: n for n in build_nodes(conn, entity, rows)}


def metric_points(rows: Iterable[Any]) -> list[MetricPoint]:
    return [
        MetricPoint(key=r.key, value=metric_value(r.value, r.nonfinite), step=r.step, timestamp=r.timestamp,
                    execution_id=r.execution_id, context_id=r.context_id)
        for r in rows
    ]
