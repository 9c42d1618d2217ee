"""Stream an MLMD store's rows in pages, in bounded memory.

Every table is read in the order of its primary key with keyset paging (``WHERE id >
:after ORDER BY id LIMIT :n``), and what belongs to a page of nodes is read by the
indexes MLMD keeps: properties by the leading node id of their primary key, parent
contexts likewise, events by ``idx_event_execution_id``, event paths by
``idx_eventpath_event_id``. Attributions and associations have no index on the member's
id, so they are streamed on their own (by their id) instead of per node.

Rows are the driver's tuples, in the column order of the ``*_COLUMNS`` lists; a column a
schema version lacks is read as NULL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from metatrail.consumer.mlmd.source import MlmdSource

NODE_TABLES = {"artifact": "Artifact", "execution": "Execution", "context": "Context"}
ARTIFACT_COLUMNS = ("id", "type_id", "uri", "state", "name", "external_id", "create_time_since_epoch",
                    "last_update_time_since_epoch")
EXECUTION_COLUMNS = ("id", "type_id", "last_known_state", "name", "external_id", "create_time_since_epoch",
                     "last_update_time_since_epoch")
CONTEXT_COLUMNS = ("id", "type_id", "name", "external_id", "create_time_since_epoch", "last_update_time_since_epoch")
COLUMNS = {"artifact": ARTIFACT_COLUMNS, "execution": EXECUTION_COLUMNS, "context": CONTEXT_COLUMNS}
PROPERTY_COLUMNS = ("name", "is_custom_property", "int_value", "double_value", "string_value", "bool_value",
                    "proto_value", "byte_value")
EVENT_COLUMNS = ("id", "artifact_id", "execution_id", "type", "milliseconds_since_epoch")
TYPE_COLUMNS = ("id", "name", "type_kind", "description", "version")


@dataclass
class TypeInfo:
    """One MLMD type: its kind (0 execution, 1 artifact, 2 context), property data types
    (MLMD's PropertyType numbers) and parent type ids."""

    id: int
    name: str
    kind: int
    description: str | None
    version: str | None
    properties: dict[str, int] = field(default_factory=dict)
    parents: list[int] = field(default_factory=list)


@dataclass
class NodePage:
    """A page of nodes of one kind and what belongs to them, keyed by node id: property
    rows (``PROPERTY_COLUMNS``), parent context ids (contexts), events (executions, rows of
    ``EVENT_COLUMNS``) and their path steps (event id -> [(is_index_step, index, key)])."""

    kind: str
    rows: list[tuple[Any, ...]]
    properties: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)
    parents: dict[int, list[int]] = field(default_factory=dict)
    events: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)
    paths: dict[int, list[tuple[Any, ...]]] = field(default_factory=dict)


class Reader:
    """Reads one store through one connection (one snapshot where the backend gives one)."""

    def __init__(self, source: MlmdSource, conn: Connection) -> None:
        self.source = source
        self.conn = conn

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        with self.conn.execute(text(sql), params or {}) as result:
            return list(result.cursor.fetchall())  # driver tuples: no Row objects per row

    def _select(self, table: str, columns: tuple[str, ...]) -> str:
        q = self.source.quote
        cols = ", ".join(q(c) if self.source.has(table, c) else "NULL" for c in columns)
        return f"SELECT {cols} FROM {q(table)}"

    def count(self, table: str) -> int:
        """Rows of an MLMD table."""
        return int(self._rows(f"SELECT COUNT(*) FROM {self.source.quote(table)}")[0][0])

    def first_id(self, kind: str) -> int | None:
        """The smallest MLMD id of the store's artifacts, executions or contexts."""
        q = self.source.quote
        value = self._rows(f"SELECT MIN({q('id')}) FROM {q(NODE_TABLES[kind])}")[0][0]
        return None if value is None else int(value)

    def types(self) -> dict[int, TypeInfo]:
        """Every type with its property data types and parent types (a small table)."""
        q = self.source.quote
        types = {r[0]: TypeInfo(r[0], r[1], r[2], r[3], r[4])
                 for r in self._rows(self._select("Type", TYPE_COLUMNS) + f" ORDER BY {q('id')}")}
        for type_id, name, data_type in self._rows(
                f"SELECT {q('type_id')}, {q('name')}, {q('data_type')} FROM {q('TypeProperty')}"):
            if type_id in types:
                types[type_id].properties[name] = data_type or 0
        for type_id, parent_id in self._rows(f"SELECT {q('type_id')}, {q('parent_type_id')} FROM {q('ParentType')}"):
            if type_id in types:
                types[type_id].parents.append(parent_id)
        return types

    def node_pages(self, kind: str, page_size: int) -> Iterator[NodePage]:
        """Pages of ``page_size`` artifacts, executions or contexts, in id order, with
        what belongs to them."""
        table = NODE_TABLES[kind]
        q = self.source.quote
        sql = self._select(table, COLUMNS[kind]) + f" WHERE {q('id')} > :after ORDER BY {q('id')} LIMIT :n"
        after = -1
        while True:
            rows = self._rows(sql, {"after": after, "n": page_size})
            if not rows:
                return
            page = NodePage(kind, rows)
            low, high = rows[0][0], rows[-1][0]
            page.properties = self._properties(table, kind, low, high)
            if kind == "context":
                page.parents = self._parents(low, high)
            elif kind == "execution":
                page.events, page.paths = self._events(low, high)
            yield page
            after = high

    def _properties(self, table: str, kind: str, low: int, high: int) -> dict[int, list[tuple[Any, ...]]]:
        q = self.source.quote
        props = f"{table}Property"
        owner = q(f"{kind}_id")
        sql = (self._select(props, (f"{kind}_id", *PROPERTY_COLUMNS))
               + f" WHERE {owner} >= :low AND {owner} <= :high ORDER BY {owner}, {q('is_custom_property')}, {q('name')}")
        out: dict[int, list[tuple[Any, ...]]] = {}
        for row in self._rows(sql, {"low": low, "high": high}):
            out.setdefault(row[0], []).append(row[1:])
        return out

    def _parents(self, low: int, high: int) -> dict[int, list[int]]:
        q = self.source.quote
        sql = (f"SELECT {q('context_id')}, {q('parent_context_id')} FROM {q('ParentContext')} "
               f"WHERE {q('context_id')} >= :low AND {q('context_id')} <= :high")
        out: dict[int, list[int]] = {}
        for child, parent in self._rows(sql, {"low": low, "high": high}):
            out.setdefault(child, []).append(parent)
        return out

    def _events(self, low: int, high: int) -> tuple[dict[int, list[tuple[Any, ...]]], dict[int, list[tuple[Any, ...]]]]:
        q = self.source.quote
        sql = self._select("Event", EVENT_COLUMNS) + (
            f" WHERE {q('execution_id')} >= :low AND {q('execution_id')} <= :high ORDER BY {q('id')}")
        events: dict[int, list[tuple[Any, ...]]] = {}
        for row in self._rows(sql, {"low": low, "high": high}):
            events.setdefault(row[2], []).append(row)
        # A path's steps in the order they were written: the row order of the event's index
        # entries (SQLite's rowid; MySQL's and PostgreSQL's index order).
        order = ", p.rowid" if self.source.dialect == "sqlite" else ", p.ctid" if self.source.dialect == "postgresql" else ""
        path_sql = (f"SELECT p.{q('event_id')}, p.{q('is_index_step')}, p.{q('step_index')}, p.{q('step_key')} "
                    f"FROM {q('EventPath')} p JOIN {q('Event')} e ON e.{q('id')} = p.{q('event_id')} "
                    f"WHERE e.{q('execution_id')} >= :low AND e.{q('execution_id')} <= :high "
                    f"ORDER BY p.{q('event_id')}{order}")
        paths: dict[int, list[tuple[Any, ...]]] = {}
        for event_id, is_index, index, key in self._rows(path_sql, {"low": low, "high": high}):
            paths.setdefault(event_id, []).append((is_index, index, key))
        return events, paths

    def memberships(self, table: str, page_size: int) -> Iterator[list[tuple[int, int]]]:
        """Pages of (context id, member id) from ``Attribution`` or ``Association``, in
        the order of their own ids."""
        q = self.source.quote
        member = q("artifact_id" if table == "Attribution" else "execution_id")
        sql = (f"SELECT {q('id')}, {q('context_id')}, {member} FROM {q(table)} "
               f"WHERE {q('id')} > :after ORDER BY {q('id')} LIMIT :n")
        after = -1
        while True:
            rows = self._rows(sql, {"after": after, "n": page_size})
            if not rows:
                return
            yield [(r[1], r[2]) for r in rows]
            after = rows[-1][0]
