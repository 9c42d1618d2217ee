"""How much of the graph a lineage subgraph left out, node by node: for each returned
node, how many of its neighbours upstream and downstream are not in the subgraph. A client
shows "+N more" on those nodes and expands one at a time (a lineage call centred on it)."""

from __future__ import annotations

from dataclasses import dataclass

from metatrail.consumer.query.domain import LineageGraph, _JSON
from metatrail.consumer.query.raw import CHUNK, Raw
from metatrail.consumer.store.batching import chunks


@dataclass(frozen=True)
class FrontierNode(_JSON):
    """A node of a subgraph with neighbours outside it."""

    id: str
    hidden_upstream: int
    hidden_downstream: int


def frontier(raw: Raw, graph: LineageGraph) -> tuple[FrontierNode, ...]:
    """The nodes of ``graph`` that have neighbours outside it, ordered as ``graph.nodes``.
    Two indexed lookups per 900 nodes (edges by artifact, edges by execution)."""
    kept = {n.id for n in graph.nodes}
    up: dict[str, set[str]] = {}
    down: dict[str, set[str]] = {}
    artifacts = [n.id for n in graph.nodes if n.kind == "artifact"]
    executions = [n.id for n in graph.nodes if n.kind == "execution"]
    for part in chunks(artifacts, CHUNK):
        sql = f"SELECT artifact_id, direction, execution_id FROM mt_edges WHERE artifact_id IN {raw.in_list(len(part))}"
        for node, direction, other in raw.rows(sql, part):
            if other not in kept:  # OUTPUT: an execution made it (upstream); INPUT: one read it
                (up if direction == "OUTPUT" else down).setdefault(node, set()).add(other)
    for part in chunks(executions, CHUNK):
        sql = f"SELECT execution_id, direction, artifact_id FROM mt_edges WHERE execution_id IN {raw.in_list(len(part))}"
        for node, direction, other in raw.rows(sql, part):
            if other not in kept:  # INPUT: it read the artifact (upstream); OUTPUT: it made it
                (up if direction == "INPUT" else down).setdefault(node, set()).add(other)
    return tuple(FrontierNode(n.id, len(up.get(n.id, ())), len(down.get(n.id, ())))
                 for n in graph.nodes if n.id in up or n.id in down)


__all__ = ["FrontierNode", "frontier"]
