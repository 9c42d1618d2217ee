"""The hot paths in plain parameterized SQL on the DBAPI cursor: node loading by id and the
lineage walk.

Why: building and compiling SQLAlchemy constructs costs more than the queries themselves
(a lineage trace is a handful of sub-millisecond index lookups). These statements are
fixed text written once per dialect; every value, ids included, is a bound parameter
(``?`` on SQLite, ``%s`` on psycopg and PyMySQL). Rows are converted here exactly as the
column types would (UTC times, JSON text, booleans).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from consumer.query.domain import Artifact, Context, Execution
from consumer.store.batching import chunks

#: Ids per IN list (under SQLite's historical 999-parameter limit).
CHUNK = 900

ARTIFACT_COLS = ("id", "type", "name", "uri", "state", "digest", "version", "state_reason", "is_placeholder",
                 "created_at", "updated_at")
EXECUTION_COLS = ("id", "type", "name", "state", "started_at", "ended_at", "fingerprint", "cached_from",
                  "trigger_id", "code_version", "environment", "error_type", "error_message", "is_placeholder",
                  "created_at", "updated_at")
CONTEXT_COLS = ("id", "type", "name", "is_placeholder", "created_at", "updated_at")
TABLES = {"artifact": ("mt_artifacts", "mt_artifact_properties", ARTIFACT_COLS),
          "execution": ("mt_executions", "mt_execution_properties", EXECUTION_COLS),
          "context": ("mt_contexts", "mt_context_properties", CONTEXT_COLS)}
PROP_COLS = "node_id, is_custom, name, value_type, int_value, double_value, string_value, bool_value, json_value"


class Raw:
    """A DBAPI cursor borrowed from a SQLAlchemy connection, with the dialect's marker."""

    def __init__(self, conn: Connection) -> None:
        self.dialect = conn.dialect.name
        self.mark = "?" if self.dialect == "sqlite" else "%s"
        self.cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        self._error = conn.dialect.loaded_dbapi.Error

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Run one statement; driver errors become SQLAlchemy's ``DBAPIError`` so the
        store's usual translation (transient or not) applies."""
        if self.mark != "?":
            sql = sql.replace("?", self.mark)
        try:
            self.cursor.execute(sql, tuple(params))
            return list(self.cursor.fetchall())
        except self._error as exc:
            raise DBAPIError.instance(sql, list(params), exc, self._error) from exc

    def close(self) -> None:
        self.cursor.close()

    def quote(self, name: str) -> str:
        """A column name that is a reserved word somewhere (``key`` on MariaDB)."""
        return f"`{name}`" if self.dialect in ("mysql", "mariadb") else f'"{name}"'

    def in_list(self, n: int) -> str:
        return "(" + ", ".join(["?"] * n) + ")"


def utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite's text form, naive UTC: parse it as UTC at once
        return datetime.fromisoformat(value + "+00:00")
    if value.tzinfo is not None:
        return value  # type: ignore[no-any-return]
    return value.replace(tzinfo=timezone.utc)  # type: ignore[no-any-return]


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def prop_value(vtype: str, i: Any, d: Any, s: Any, b: Any, j: Any) -> Any:
    if vtype == "int":
        return i if i is not None else int(d)
    if vtype == "float":
        return float(d) if d is not None else (float(_json(j)) if j is not None else None)
    if vtype == "string":
        return s
    if vtype == "bool":
        return None if b is None else bool(b)
    return _json(j)


def _add_props(out: dict[str, tuple[dict[str, Any], dict[str, Any]]], rows: Iterable[tuple[Any, ...]]) -> None:
    for node_id, custom, name, vtype, i, d, s, b, j in rows:
        pair = out.get(node_id)
        if pair is None:
            pair = out[node_id] = ({}, {})
        pair[1 if custom else 0][name] = prop_value(vtype, i, d, s, b, j)


def _sorted_keys(out: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Property keys sorted, whatever order the database returned them in."""
    for pair in out.values():
        for half in pair:
            if len(half) > 1:
                items = sorted(half.items())
                half.clear()
                half.update(items)


def load_properties(raw: Raw, table: str, ids: Sequence[str]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """node id -> (properties, custom_properties)."""
    out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for part in chunks(ids, CHUNK):
        _add_props(out, raw.rows(f"SELECT {PROP_COLS} FROM {table} WHERE node_id IN {raw.in_list(len(part))}", part))
    _sorted_keys(out)
    return out


def fetch_rows(raw: Raw, kind: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Node rows (columns of ``TABLES[kind]``) for the ids that exist."""
    table, _, cols = TABLES[kind]
    rows: list[tuple[Any, ...]] = []
    for part in chunks(list(dict.fromkeys(ids)), CHUNK):
        rows.extend(raw.rows(f"SELECT {', '.join(cols)} FROM {table} WHERE id IN {raw.in_list(len(part))}", part))
    return rows


Props = dict[str, tuple[dict[str, Any], dict[str, Any]]]


def build_nodes(raw: Raw, kind: str, rows: Sequence[Sequence[Any]], props: Props | None = None) -> list[Any]:
    """Domain objects for node rows (in order), loading their properties unless given."""
    if not rows:
        return []
    if props is None:
        props = load_properties(raw, TABLES[kind][1], [r[0] for r in rows])
    if kind == "artifact":
        return [Artifact(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], bool(r[8]), utc(r[9]), utc(r[10]),
                         *(props.get(r[0]) or ({}, {}))) for r in rows]
    if kind == "execution":
        return [Execution(r[0], r[1], r[2], r[3], utc(r[4]), utc(r[5]), r[6], r[7], r[8], _json(r[9]), _json(r[10]),
                          r[11], r[12], bool(r[13]), utc(r[14]), utc(r[15]), *(props.get(r[0]) or ({}, {})))
                for r in rows]
    parents: dict[str, list[str]] = {}
    for part in chunks([r[0] for r in rows], CHUNK):
        sql = f"SELECT context_id, parent_id FROM mt_parent_contexts WHERE context_id IN {raw.in_list(len(part))}"
        for cid, pid in raw.rows(sql, part):
            parents.setdefault(cid, []).append(pid)
    return [Context(r[0], r[1], r[2], bool(r[3]), utc(r[4]), utc(r[5]), tuple(sorted(parents.get(r[0], ()))),
                    *(props.get(r[0]) or ({}, {}))) for r in rows]


def load_nodes(raw: Raw, kind: str, ids: Sequence[str]) -> dict[str, Any]:
    """id -> Artifact / Execution / Context for the ids that exist (properties included)."""
    return {n.id: n for n in build_nodes(raw, kind, fetch_rows(raw, kind, ids))}


_GRAPH_ART = ("'artifact'", "n.id", "n.type", "n.name", "n.state", "n.is_placeholder", "n.created_at", "n.updated_at",
              "n.uri", "n.digest", "n.version", "n.state_reason") + ("NULL",) * 9
_GRAPH_EXEC = ("'execution'", "n.id", "n.type", "n.name", "n.state", "n.is_placeholder", "n.created_at", "n.updated_at",
               "NULL", "NULL", "NULL", "NULL", "n.started_at", "n.ended_at", "n.fingerprint", "n.cached_from",
               "n.trigger_id", "n.code_version", "n.environment", "n.error_type", "n.error_message")
_GRAPH_PROPS = "p.is_custom, p.name, p.value_type, p.int_value, p.double_value, p.string_value, p.bool_value, p.json_value"


def load_graph_nodes(raw: Raw, artifact_ids: Sequence[str], execution_ids: Sequence[str]) -> dict[str, Any]:
    """Artifacts and executions by id with their properties, in one statement (one row
    per node and property) when the ids fit one IN list each."""
    if len(artifact_ids) > CHUNK or len(execution_ids) > CHUNK or not (artifact_ids or execution_ids):
        return {**load_nodes(raw, "artifact", artifact_ids), **load_nodes(raw, "execution", execution_ids)}
    parts, params = [], []
    for cols, table, props, ids in ((_GRAPH_ART, "mt_artifacts", "mt_artifact_properties", artifact_ids),
                                    (_GRAPH_EXEC, "mt_executions", "mt_execution_properties", execution_ids)):
        if ids:
            parts.append(f"SELECT {', '.join(cols)}, {_GRAPH_PROPS} FROM {table} n "
                         f"LEFT JOIN {props} p ON p.node_id = n.id WHERE n.id IN {raw.in_list(len(ids))}")
            params.extend(ids)
    rows: dict[str, tuple[Any, ...]] = {}
    props_out: Props = {}
    for r in raw.rows(" UNION ALL ".join(parts), params):
        rows.setdefault(r[1], r)
        if r[22] is not None:
            _add_props(props_out, [(r[1], *r[21:])])
    _sorted_keys(props_out)
    empty: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
    out: dict[str, Any] = {}
    for node_id, r in rows.items():
        p = props_out.get(node_id, empty)
        if r[0] == "artifact":
            out[node_id] = Artifact(node_id, r[2], r[3], r[8], r[4], r[9], r[10], r[11], bool(r[5]), utc(r[6]),
                                    utc(r[7]), dict(p[0]), dict(p[1]))
        else:
            out[node_id] = Execution(node_id, r[2], r[3], r[4], utc(r[12]), utc(r[13]), r[14], r[15], r[16],
                                     _json(r[17]), _json(r[18]), r[19], r[20], bool(r[5]), utc(r[6]), utc(r[7]),
                                     dict(p[0]), dict(p[1]))
    return out


def _casts(dialect: str) -> tuple[str, str]:
    if dialect in ("mysql", "mariadb"):
        return "CHAR(36)", "SIGNED"
    return "VARCHAR(36)", "INTEGER"


#: (edge direction from an artifact to the next execution, from it to the next artifact)
STEP = {"upstream": ("OUTPUT", "INPUT"), "downstream": ("INPUT", "OUTPUT")}


def walk_edges(raw: Raw, start: str, direction: str, max_depth: int) -> list[tuple[str, str, str, str]]:
    """Edges (execution_id, direction, artifact_id, role) of every execution one step
    beyond an artifact reachable from ``start`` within ``max_depth`` edges, plus the
    start's own edges when it is an execution (see :mod:`consumer.query.reach`).

    Two statements: the recursive walk returns artifact ids only, then one indexed lookup
    fetches the edges around them. (Joining the walk's output inside the same statement
    lets PostgreSQL's planner, which cannot estimate a recursive CTE, pick full scans.)"""
    first, second = STEP[direction]
    id_type, int_type = _casts(raw.dialect)
    walk = f"""
WITH RECURSIVE lin(id, depth) AS (
    SELECT CAST(? AS {id_type}), CAST(0 AS {int_type})
    UNION
    SELECT s.artifact_id, CAST(1 AS {int_type}) FROM mt_edges s WHERE s.execution_id = ? AND s.direction = '{second}'
    UNION
    SELECT e2.artifact_id, lin.depth + 2
    FROM lin
    JOIN mt_edges e1 ON e1.artifact_id = lin.id AND e1.direction = '{first}'
    JOIN mt_edges e2 ON e2.execution_id = e1.execution_id AND e2.direction = '{second}'
    WHERE lin.depth + 2 <= ?
)
SELECT DISTINCT id FROM lin"""
    reached = [r[0] for r in raw.rows(walk, (start, start, max_depth))]
    edges: set[tuple[str, str, str, str]] = set()
    for part in chunks(reached, CHUNK):
        sql = f"""
SELECT e.execution_id, e.direction, e.artifact_id, e.role
FROM (SELECT a.execution_id FROM mt_edges a WHERE a.direction = '{first}' AND a.artifact_id IN {raw.in_list(len(part))}
      UNION SELECT ?) x
JOIN mt_edges e ON e.execution_id = x.execution_id"""
        edges.update((r[0], r[1], r[2], r[3]) for r in raw.rows(sql, (*part, start)))
    return list(edges)


def node_kind(raw: Raw, node_id: str) -> str | None:
    for kind, table in (("artifact", "mt_artifacts"), ("execution", "mt_executions")):
        if raw.rows(f"SELECT 1 FROM {table} WHERE id = ?", (node_id,)):
            return kind
    return None
