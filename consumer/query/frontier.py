"""How much of the graph a lineage subgraph left out, node by node: for each returned
node, how many of its neighbours upstream and downstream are not in the subgraph. A client
shows "+N more" on those nodes and expands one at a time (a lineage call centred on it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from metatrail.consumer.query.domain import LineageGraph, _JSON
from metatrail.consumer.query.raw import CHUNK, Raw
from metatrail.consumer.store.batching import chunks


@dataclass(frozen=True)
class FrontierNode(_JSON):
    """A node of a subgraph with neighbours outside it."""

    id: str
    hidden_upstream: int
    hidden_downstream: int


_BY_ARTIFACT = "SELECT artifact_id, direction, execution_id, 'artifact' FROM mt_edges WHERE artifact_id "
_BY_EXECUTION = "SELECT execution_id, direction, artifact_id, 'execution' FROM mt_edges WHERE execution_id "


def frontier(raw: Raw, graph: LineageGraph) -> tuple[FrontierNode, ...]:
    """The nodes of ``graph`` that have neighbours outside it, ordered as ``graph.nodes``.
    One statement of two indexed lookups (edges by artifact, edges by execution) when the
    ids fit an IN list each; one per 900 ids otherwise."""
    kept = {n.id for n in graph.nodes}
    up: dict[str, set[str]] = {}
    down: dict[str, set[str]] = {}
    artifacts = [n.id for n in graph.nodes if n.kind == "artifact"]
    executions = [n.id for n in graph.nodes if n.kind == "execution"]
    for node, direction, other, kind in _edges_of(raw, artifacts, executions):
        if other in kept:
            continue
        # From an artifact, OUTPUT: an execution made it (upstream); INPUT: one read it.
        # From an execution, INPUT: it read the artifact (upstream); OUTPUT: it made it.
        upstream = direction == ("OUTPUT" if kind == "artifact" else "INPUT")
        (up if upstream else down).setdefault(node, set()).add(other)
    return tuple(FrontierNode(n.id, len(up.get(n.id, ())), len(down.get(n.id, ())))
                 for n in graph.nodes if n.id in up or n.id in down)


def _edges_of(raw: Raw, artifacts: list[str], executions: list[str]) -> list[tuple[Any, ...]]:
    """(node, direction, other end, node kind) of every edge of the given nodes."""
    if len(artifacts) <= CHUNK and len(executions) <= CHUNK:
        tests = [(head, raw.one_of(ids)) for head, ids in ((_BY_ARTIFACT, artifacts), (_BY_EXECUTION, executions)) if ids]
        sql = " UNION ALL ".join(head + test for head, (test, _) in tests)
        return raw.rows(sql, [arg for _, (_, args) in tests for arg in args]) if sql else []
    rows: list[tuple[Any, ...]] = []
    for head, ids in ((_BY_ARTIFACT, artifacts), (_BY_EXECUTION, executions)):
        for part in chunks(ids, CHUNK):
            test, args = raw.one_of(part)
            rows.extend(raw.rows(head + test, args))
    return rows


__all__ = ["FrontierNode", "frontier"]
