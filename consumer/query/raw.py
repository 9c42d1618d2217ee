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

from metatrail.consumer.query.domain import Artifact, Context, Execution
from metatrail.consumer.query.liveness import Liveness
from metatrail.consumer.store.batching import chunks
from metatrail.consumer.store.property_document import decode_many
from metatrail.schemas.reserved import RESERVED_PREFIX, RUN_ENDED_AT, RUN_STARTED_AT, RUN_STATUS, is_reserved

#: Ids per IN list (under SQLite's historical 999-parameter limit).
CHUNK = 900

ARTIFACT_COLS = ("id", "type", "name", "uri", "state", "digest", "version", "state_reason", "is_placeholder",
                 "created_at", "updated_at", "mlmd_id", "external_id", "properties_doc")
EXECUTION_COLS = ("id", "type", "name", "state", "started_at", "ended_at", "fingerprint", "cached_from",
                  "trigger_id", "code_version", "environment", "error_type", "error_message", "is_placeholder",
                  "created_at", "updated_at", "producer_host", "producer_pid", "last_event_at", "mlmd_id",
                  "external_id", "properties_doc")
CONTEXT_COLS = ("id", "type", "name", "is_placeholder", "created_at", "updated_at", "mlmd_id", "external_id",
                "properties_doc")
#: kind -> (node table, columns read; the last is always the property document)
TABLES = {"artifact": ("mt_artifacts", ARTIFACT_COLS),
          "execution": ("mt_executions", EXECUTION_COLS),
          "context": ("mt_contexts", CONTEXT_COLS)}


class Raw:
    """A DBAPI cursor borrowed from a SQLAlchemy connection, with the dialect's marker."""

    def __init__(self, conn: Connection, liveness: Liveness | None = None) -> None:
        #: What RUNNING executions are judged against (stale or not).
        self.liveness = liveness or Liveness.here()
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

    def one_of(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """A membership test for ``values`` and its parameters: ``f"id {test}"``.

        On PostgreSQL the values travel as one JSON array (``IN (SELECT value FROM
        json_array_elements_text(?))``), as apply's reads send them
        (:mod:`metatrail.consumer.apply.writer`): the statement's text is then the same
        for any number of values, so it is parsed once (psycopg prepares a statement run
        five times) instead of once per call (a 500-id primary-key lookup: 12 ms as an IN
        list, 6 ms so), and one text, written by ``json.dumps`` in C, costs the driver less
        than hundreds of parameters. ``IN (?, ?, ...)`` elsewhere: SQLite binds in C, and
        its planner joined a ``json_each`` subquery into the lineage walk's and frontier's
        statements badly (a wide lineage took 73 ms instead of 26)."""
        members, args = self._members(values)
        return f"IN {members}", args

    def none_of(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """The negation of ``one_of``."""
        members, args = self._members(values)
        return f"NOT IN {members}", args

    def _members(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        if self.dialect == "postgresql":
            # Elements come out as text; whole numbers (steps) are cast back.
            value = "CAST(value AS BIGINT)" if values and all(type(v) is int for v in values) else "value"
            return f"(SELECT {value} FROM json_array_elements_text(CAST(? AS JSON)))", [json.dumps(list(values))]
        return "(" + ", ".join(["?"] * len(values)) + ")", list(values)


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


def fetch_rows(raw: Raw, kind: str, ids: Sequence[str]) -> list[tuple[Any, ...]]:
    """Node rows (columns of ``TABLES[kind]``) for the ids that exist."""
    table, cols = TABLES[kind]
    rows: list[tuple[Any, ...]] = []
    for part in chunks(list(dict.fromkeys(ids)), CHUNK):
        test, args = raw.one_of(part)
        rows.extend(raw.rows(f"SELECT {', '.join(cols)} FROM {table} WHERE id {test}", args))
    return rows


_new = object.__new__
_set = object.__setattr__


def _artifacts(rows: Iterable[Sequence[Any]], props: Iterable[Sequence[dict[str, Any]]]) -> list[Artifact]:
    """Artifacts from rows of ``ARTIFACT_COLS`` and their decoded property documents.

    Each node's ``__dict__`` is set whole, without running ``__init__``: a frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``, which cost
    more than the rest of building a node when a filter returns thousands (the objects
    are equal all the same: tests compare). A never-updated node's ``updated_at`` is its
    ``created_at`` text, parsed once."""
    out = []
    for r, p in zip(rows, props):
        created = utc(r[9])
        node = _new(Artifact)
        _set(node, "__dict__", {
            "id": r[0], "type": r[1], "name": r[2], "uri": r[3], "state": r[4], "digest": r[5], "version": r[6],
            "state_reason": r[7], "is_placeholder": bool(r[8]), "created_at": created,
            "updated_at": created if r[10] == r[9] else utc(r[10]), "properties": p[0], "custom_properties": p[1],
            "mlmd_id": r[11], "external_id": r[12], "kind": "artifact"})
        out.append(node)
    return out


def _executions(
    rows: Iterable[Sequence[Any]], props: Iterable[Sequence[dict[str, Any]]], liveness: Liveness
) -> list[Execution]:
    """Executions from rows of ``EXECUTION_COLS`` and their decoded property documents
    (built as ``_artifacts`` builds artifacts); RUNNING ones judged stale or not."""
    out = []
    for r, p in zip(rows, props):
        created = utc(r[14])
        started, last = utc(r[4]), utc(r[18])
        stale = None if r[3] != "RUNNING" else liveness.stale_reason(r[3], r[16], r[17], started, last)
        node = _new(Execution)
        _set(node, "__dict__", {
            "id": r[0], "type": r[1], "name": r[2], "state": r[3], "started_at": started, "ended_at": utc(r[5]),
            "fingerprint": r[6], "cached_from": r[7], "trigger_id": r[8], "code_version": _json(r[9]),
            "environment": _json(r[10]), "error_type": r[11], "error_message": r[12], "is_placeholder": bool(r[13]),
            "created_at": created, "updated_at": created if r[15] == r[14] else utc(r[15]), "properties": p[0],
            "custom_properties": p[1], "mlmd_id": r[19], "external_id": r[20], "kind": "execution", "uri": None,
            "producer_host": r[16], "producer_pid": r[17], "last_event_at": last, "stale": stale})
        out.append(node)
    return out


#: How a bookkeeping name (or value) appears in a property document's text.
_RESERVED_MARK = '"' + RESERVED_PREFIX


def take_bookkeeping(texts: Sequence[str | None], props: Sequence[Sequence[dict[str, Any]]]) -> dict[int, dict[str, Any]]:
    """Remove the bookkeeping properties from decoded property documents (in place) and
    return them, by document position. Only documents whose text holds the reserved
    prefix are looked at (a substring test each), so nodes without any cost next to nothing."""
    taken: dict[int, dict[str, Any]] = {}
    for i, text in enumerate(texts):
        if text and _RESERVED_MARK in text:
            for mapping in props[i]:
                for name in [k for k in mapping if is_reserved(k)]:
                    taken.setdefault(i, {})[name] = mapping.pop(name)
    return taken


def _decode(texts: Sequence[str | None]) -> tuple[list[Any], dict[int, dict[str, Any]]]:
    props = decode_many(texts)
    return props, take_bookkeeping(texts, props)


def _run_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _contexts(rows: Sequence[Sequence[Any]], props: Sequence[Sequence[dict[str, Any]]],
              bookkeeping: dict[int, dict[str, Any]], parents: dict[str, list[str]]) -> list[Context]:
    out = []
    for i, (r, p) in enumerate(zip(rows, props)):
        run = bookkeeping.get(i, {})
        status = run.get(RUN_STATUS)
        out.append(Context(r[0], r[1], r[2], bool(r[3]), utc(r[4]), utc(r[5]), tuple(sorted(parents.get(r[0], ()))),
                           p[0], p[1], _run_time(run.get(RUN_STARTED_AT)), _run_time(run.get(RUN_ENDED_AT)),
                           status if isinstance(status, str) else None, r[6], r[7]))
    return out


def build_nodes(raw: Raw, kind: str, rows: Sequence[Sequence[Any]]) -> list[Any]:
    """Domain objects for node rows (starting with the columns of ``TABLES[kind]``, as
    the driver returns them); properties come from the rows' property documents, less
    the bookkeeping ones (a run's become its ``started_at``, ``ended_at``, ``status``)."""
    if not rows:
        return []
    doc = len(TABLES[kind][1]) - 1
    props, bookkeeping = _decode([r[doc] for r in rows])
    if kind == "artifact":
        return _artifacts(rows, props)
    if kind == "execution":
        return _executions(rows, props, raw.liveness)
    parents: dict[str, list[str]] = {}
    for part in chunks([r[0] for r in rows], CHUNK):
        test, args = raw.one_of(part)
        for cid, pid in raw.rows(f"SELECT context_id, parent_id FROM mt_parent_contexts WHERE context_id {test}", args):
            parents.setdefault(cid, []).append(pid)
    return _contexts(rows, props, bookkeeping, parents)


def load_nodes(raw: Raw, kind: str, ids: Sequence[str]) -> dict[str, Any]:
    """id -> Artifact / Execution / Context for the ids that exist (properties included)."""
    return {n.id: n for n in build_nodes(raw, kind, fetch_rows(raw, kind, ids))}


#: The graph statement's columns: one layout for both kinds (UNION ALL needs the same
#: type in each position), the property document last.
_GRAPH_ART = ("'artifact'", "n.id", "n.type", "n.name", "n.state", "n.is_placeholder", "n.created_at", "n.updated_at",
              "n.uri", "n.digest", "n.version", "n.state_reason") + ("NULL",) * 12 + (
              "n.mlmd_id", "n.external_id", "n.properties_doc")
_GRAPH_EXEC = ("'execution'", "n.id", "n.type", "n.name", "n.state", "n.is_placeholder", "n.created_at", "n.updated_at",
               "NULL", "NULL", "NULL", "NULL", "n.started_at", "n.ended_at", "n.fingerprint", "n.cached_from",
               "n.trigger_id", "n.code_version", "n.environment", "n.error_type", "n.error_message",
               "n.producer_host", "n.producer_pid", "n.last_event_at", "n.mlmd_id", "n.external_id",
               "n.properties_doc")


def load_graph_nodes(raw: Raw, artifact_ids: Sequence[str], execution_ids: Sequence[str]) -> dict[str, Any]:
    """Artifacts and executions by id with their properties, in one statement when the
    ids fit one IN list each."""
    if len(artifact_ids) > CHUNK or len(execution_ids) > CHUNK or not (artifact_ids or execution_ids):
        return {**load_nodes(raw, "artifact", artifact_ids), **load_nodes(raw, "execution", execution_ids)}
    parts, params = [], []
    for cols, table, ids in ((_GRAPH_ART, "mt_artifacts", artifact_ids), (_GRAPH_EXEC, "mt_executions", execution_ids)):
        if ids:
            test, args = raw.one_of(ids)
            parts.append(f"SELECT {', '.join(cols)} FROM {table} n WHERE n.id {test}")
            params.extend(args)
    rows = raw.rows(" UNION ALL ".join(parts), params)
    props, _ = _decode([r[26] for r in rows])
    # Each row in the column order of its kind's builder.
    arts = [(r[1], r[2], r[3], r[8], r[4], r[9], r[10], r[11], r[5], r[6], r[7], r[24], r[25])
            for r in rows if r[0] == "artifact"]
    execs = [(r[1], r[2], r[3], r[4], r[12], r[13], r[14], r[15], r[16], r[17], r[18], r[19], r[20], r[5], r[6], r[7],
              r[21], r[22], r[23], r[24], r[25]) for r in rows if r[0] != "artifact"]
    art_props = [p for r, p in zip(rows, props) if r[0] == "artifact"]
    exec_props = [p for r, p in zip(rows, props) if r[0] != "artifact"]
    return {n.id: n for n in [*_artifacts(arts, art_props), *_executions(execs, exec_props, raw.liveness)]}


def _casts(dialect: str) -> tuple[str, str]:
    if dialect in ("mysql", "mariadb"):
        return "CHAR(36)", "SIGNED"
    return "VARCHAR(36)", "INTEGER"


def id_cast(dialect: str) -> str:
    """The type to CAST an id parameter to in a select list (untyped there otherwise)."""
    return _casts(dialect)[0]


#: (edge direction from an artifact to the next execution, from it to the next artifact)
STEP = {"upstream": ("OUTPUT", "INPUT"), "downstream": ("INPUT", "OUTPUT")}


def walk_edges(raw: Raw, start: str, direction: str, max_depth: int) -> list[tuple[str, str, str, str, str]]:
    """Edges (execution_id, direction, artifact_id, role, edge_type) of every execution one step
    beyond an artifact reachable from ``start`` within ``max_depth`` edges, plus the
    start's own edges when it is an execution (see :mod:`metatrail.consumer.query.reach`).

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
    edges: set[tuple[str, str, str, str, str]] = set()
    for part in chunks(reached, CHUNK):
        test, args = raw.one_of(part)
        sql = f"""
SELECT e.execution_id, e.direction, e.artifact_id, e.role, e.edge_type
FROM (SELECT a.execution_id FROM mt_edges a WHERE a.direction = '{first}' AND a.artifact_id {test}
      UNION SELECT ?) x
JOIN mt_edges e ON e.execution_id = x.execution_id"""
        edges.update((r[0], r[1], r[2], r[3], r[4]) for r in raw.rows(sql, (*args, start)))
    return list(edges)


def node_kind(raw: Raw, node_id: str) -> str | None:
    for kind, table in (("artifact", "mt_artifacts"), ("execution", "mt_executions")):
        if raw.rows(f"SELECT 1 FROM {table} WHERE id = ?", (node_id,)):
            return kind
    return None
