"""One node with its neighbourhood: the contexts it belongs to, the executions that
produced and consumed it (an artifact), its inputs and outputs (an execution), its parent
and child contexts and member counts (a context). What a node page shows.

Neighbour lists are capped at ``MAX_NEIGHBOURS`` each (a shared dataset can feed
thousands of executions); ``counts`` always gives the full numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metatrail.consumer.query.domain import Artifact, Context, Execution, _JSON, _jsonable
from metatrail.consumer.query.raw import Raw

#: Largest neighbour list of each kind in a detail.
MAX_NEIGHBOURS = 1000


@dataclass(frozen=True)
class NodeRef(_JSON):
    """A neighbour, as much as a link needs: its kind, type, name and state (None for a
    context), and the role of the edge that leads to it ('' when there is none)."""

    id: str
    kind: str
    type: str | None
    name: str | None
    state: str | None = None
    role: str = ""


@dataclass(frozen=True)
class NodeDetail:
    """A node and its neighbourhood (lists empty where they do not apply to the kind)."""

    node: Artifact | Execution | Context
    contexts: tuple[NodeRef, ...] = ()
    producers: tuple[NodeRef, ...] = ()
    consumers: tuple[NodeRef, ...] = ()
    inputs: tuple[NodeRef, ...] = ()
    outputs: tuple[NodeRef, ...] = ()
    parents: tuple[NodeRef, ...] = ()
    children: tuple[NodeRef, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = {name: [r.to_json() for r in getattr(self, name)]
                for name in ("contexts", "producers", "consumers", "inputs", "outputs", "parents", "children")}
        return {**self.node.to_json(), **data, "counts": _jsonable(self.counts)}


def _refs(raw: Raw, kind: str, pairs: list[tuple[str, str]]) -> tuple[NodeRef, ...]:
    """NodeRefs for (id, role) pairs, ordered by type, name, id (placeholders for ids never recorded)."""
    if not pairs:
        return ()
    ids = list(dict.fromkeys(i for i, _ in pairs))
    table, state = {"artifact": ("mt_artifacts", "state"), "execution": ("mt_executions", "state"),
                    "context": ("mt_contexts", "NULL")}[kind]
    test, args = raw.one_of(ids)
    found = {r[0]: r for r in raw.rows(f"SELECT id, type, name, {state} FROM {table} WHERE id {test}", args)}
    refs = []
    for node_id, role in pairs:
        r = found.get(node_id)
        refs.append(NodeRef(node_id, kind, r[1] if r else None, r[2] if r else None, r[3] if r else None, role))
    refs.sort(key=lambda n: (n.type or "", n.name or "", n.id, n.role))
    return tuple(refs)


def _count(raw: Raw, sql: str, node_id: str) -> int:
    return int(raw.rows(sql, [node_id])[0][0])


def node_detail(raw: Raw, node: Artifact | Execution | Context) -> NodeDetail:
    """The neighbourhood of ``node`` (already loaded)."""
    limit = f" LIMIT {MAX_NEIGHBOURS}"
    if isinstance(node, Artifact):
        contexts = raw.rows("SELECT context_id, '' FROM mt_attributions WHERE artifact_id = ? ORDER BY context_id" + limit, [node.id])
        edges = {d: raw.rows("SELECT execution_id, role FROM mt_edges WHERE artifact_id = ? AND direction = ? "
                             "ORDER BY execution_id, role" + limit, [node.id, d]) for d in ("OUTPUT", "INPUT")}
        counts = {name: _count(raw, f"SELECT COUNT(*) FROM mt_edges WHERE artifact_id = ? AND direction = '{d}'", node.id)
                  for name, d in (("producers", "OUTPUT"), ("consumers", "INPUT"))}
        counts["contexts"] = _count(raw, "SELECT COUNT(*) FROM mt_attributions WHERE artifact_id = ?", node.id)
        return NodeDetail(node, contexts=_refs(raw, "context", _pairs(contexts)),
                          producers=_refs(raw, "execution", _pairs(edges["OUTPUT"])),
                          consumers=_refs(raw, "execution", _pairs(edges["INPUT"])), counts=counts)
    if isinstance(node, Execution):
        contexts = raw.rows("SELECT context_id, '' FROM mt_associations WHERE execution_id = ? ORDER BY context_id" + limit,
                            [node.id])
        edges = {d: raw.rows("SELECT artifact_id, role FROM mt_edges WHERE execution_id = ? AND direction = ? "
                             "ORDER BY artifact_id, role" + limit, [node.id, d]) for d in ("INPUT", "OUTPUT")}
        counts = {name: _count(raw, f"SELECT COUNT(*) FROM mt_edges WHERE execution_id = ? AND direction = '{d}'", node.id)
                  for name, d in (("inputs", "INPUT"), ("outputs", "OUTPUT"))}
        counts["contexts"] = _count(raw, "SELECT COUNT(*) FROM mt_associations WHERE execution_id = ?", node.id)
        return NodeDetail(node, contexts=_refs(raw, "context", _pairs(contexts)),
                          inputs=_refs(raw, "artifact", _pairs(edges["INPUT"])),
                          outputs=_refs(raw, "artifact", _pairs(edges["OUTPUT"])), counts=counts)
    parents = raw.rows("SELECT parent_id, '' FROM mt_parent_contexts WHERE context_id = ? ORDER BY parent_id" + limit, [node.id])
    children = raw.rows("SELECT context_id, '' FROM mt_parent_contexts WHERE parent_id = ? ORDER BY context_id" + limit,
                        [node.id])
    counts = {
        "children": _count(raw, "SELECT COUNT(*) FROM mt_parent_contexts WHERE parent_id = ?", node.id),
        "executions": _count(raw, "SELECT COUNT(*) FROM mt_associations WHERE context_id = ?", node.id),
        "artifacts": _count(raw, "SELECT COUNT(*) FROM mt_attributions WHERE context_id = ?", node.id),
    }
    return NodeDetail(node, parents=_refs(raw, "context", _pairs(parents)),
                      children=_refs(raw, "context", _pairs(children)), counts=counts)


def _pairs(rows: list[tuple[Any, ...]]) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1] or "")) for r in rows]


__all__ = ["MAX_NEIGHBOURS", "NodeDetail", "NodeRef", "node_detail"]
