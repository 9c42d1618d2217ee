"""Edges among a set of nodes: what a client that assembles a view from several lineage
answers (a node expanded here, another there) needs so that every edge between two shown
nodes is drawn, not only those each answer happened to walk."""

from __future__ import annotations

from collections.abc import Collection

from metatrail.consumer.query.domain import Edge
from metatrail.consumer.query.raw import CHUNK, Raw
from metatrail.consumer.store.batching import chunks


def edges_among(raw: Raw, artifact_ids: Collection[str], execution_ids: Collection[str]) -> tuple[Edge, ...]:
    """Every INPUT/OUTPUT edge whose artifact is in ``artifact_ids`` and whose execution is
    in ``execution_ids``, ordered (source, target, role). One indexed lookup per 900
    artifacts (edges by artifact), filtered to the executions in Python."""
    executions = set(execution_ids)
    found: set[Edge] = set()
    if not executions:
        return ()
    for part in chunks(sorted(artifact_ids), CHUNK):
        test, args = raw.one_of(part)
        sql = f"SELECT execution_id, direction, artifact_id, role FROM mt_edges WHERE artifact_id {test}"
        for execution, direction, artifact, role in raw.rows(sql, args):
            if execution not in executions:
                continue
            if direction == "INPUT":
                found.add(Edge(artifact, execution, "input", role or ""))
            else:
                found.add(Edge(execution, artifact, "output", role or ""))
    return tuple(sorted(found, key=lambda e: (e.source, e.target, e.role)))


__all__ = ["edges_among"]
