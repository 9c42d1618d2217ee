"""Lineage subgraphs: a recursive CTE finds the reachable artifacts, one query fetches the
edges around them, and a breadth-first pass in Python assigns exact distances, applies the
hop, type and size limits and decides ``truncated``.

Why this split: the CTE does the unbounded part (the walk) in the database with indexed
joins; the edge set it returns is small (the reached neighbourhood), so exact distances
and a deterministic cut (by distance, then id) cost nothing and are identical on every
backend, whatever order each database returns rows in. The SQL is plain text on the
DBAPI cursor (:mod:`metatrail.consumer.query.raw`): a trace is a few index lookups, cheaper than
building SQLAlchemy constructs for them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection

from metatrail.consumer.query.domain import Artifact, Edge, Execution, LineageGraph
from metatrail.consumer.query.idrefs import resolve
from metatrail.consumer.query.raw import STEP, Raw, load_graph_nodes, node_kind, walk_edges
from metatrail.schemas.errors import NotFoundError

#: Default hop limit (edges) and node limit of ``Store.lineage``.
DEFAULT_MAX_HOPS = 50
DEFAULT_LIMIT = 10_000

_EdgeKey = tuple[str, str, str, str, str]  # (execution_id, direction, artifact_id, role, edge_type)


def _bfs(start: str, start_kind: str, direction: str, edges: set[_EdgeKey], max_hops: int) -> tuple[dict[str, tuple[int, str]], bool]:
    """Distances (and kinds) within ``max_hops``; True when something lies beyond."""
    first, second = STEP[direction]
    from_artifact: dict[str, set[str]] = {}
    from_execution: dict[str, set[str]] = {}
    for ex, d, art, _, _ in edges:
        if d == first:
            from_artifact.setdefault(art, set()).add(ex)
        if d == second:
            from_execution.setdefault(ex, set()).add(art)
    seen: dict[str, tuple[int, str]] = {start: (0, start_kind)}
    queue = deque([start])
    truncated = False
    while queue:
        node = queue.popleft()
        depth, kind = seen[node]
        nexts = from_artifact.get(node, set()) if kind == "artifact" else from_execution.get(node, set())
        next_kind = "execution" if kind == "artifact" else "artifact"
        for nxt in sorted(nexts):
            if nxt in seen:
                continue
            if depth >= max_hops:
                truncated = True
                continue
            seen[nxt] = (depth + 1, next_kind)
            queue.append(nxt)
    return seen, truncated


def lineage_graph(
    raw: Raw,
    start: str,
    direction: str,
    max_hops: int,
    types: Collection[str] | None,
    limit: int,
) -> LineageGraph:
    """The lineage subgraph around ``start`` (see ``Store.lineage``)."""
    """Raises ``NotFoundError`` when ``start`` is neither an artifact nor an execution."""
    directions = ("upstream", "downstream") if direction == "both" else (direction,)
    # Walking artifacts to ``max_hops`` is enough to see one hop beyond it (``truncated``):
    # the walk returns every edge of the executions next to each artifact it reaches.
    walked = {d: set(walk_edges(raw, start, d, max_hops)) for d in directions}
    start_kind = _kind_from_edges(start, walked) or node_kind(raw, start)
    if start_kind is None:
        resolve(raw, start, ("artifact", "execution"))  # names what the id is instead, if anything
        raise NotFoundError(f"no artifact or execution with id {start!r}")
    depths: dict[str, tuple[int, str]] = {}
    all_edges: set[_EdgeKey] = set()
    truncated = False
    for d in directions:
        edges = walked[d]
        seen, cut = _bfs(start, start_kind, d, edges, max_hops)
        truncated = truncated or cut
        for node, (depth, kind) in seen.items():
            if node not in depths or depth < depths[node][0]:
                depths[node] = (depth, kind)
        first, second = STEP[d]
        for e in edges:  # keep the edges this direction traverses between reached nodes
            if e[0] in seen and e[2] in seen and e[1] in (first, second):
                all_edges.add(e)
    ordered = sorted(depths.items(), key=lambda kv: (kv[1][0], kv[0]))
    if types is None and len(ordered) > limit:  # the same cut as below, before loading what it drops
        ordered, truncated = ordered[:limit], True
    found = load_graph_nodes(raw, [n for n, (_, k) in ordered if k == "artifact"],
                             [n for n, (_, k) in ordered if k == "execution"])
    nodes: list[Artifact | Execution] = []
    for node_id, (depth, kind) in ordered:
        node = found.get(node_id)
        if node is None:  # an edge to a node never recorded, not even as a placeholder
            node = (Artifact(node_id, None, None, None, "UNKNOWN", is_placeholder=True) if kind == "artifact"
                    else Execution(node_id, None, None, "UNKNOWN", is_placeholder=True))
        if types is not None and node_id != start and node.type not in types:
            continue
        nodes.append(node)
    if len(nodes) > limit:
        nodes, truncated = nodes[:limit], True
    kept = {n.id for n in nodes}
    out_edges = []
    for ex, d, art, role, edge_type in sorted(all_edges):
        if ex in kept and art in kept:
            finer = None if edge_type == d else edge_type
            out_edges.append(Edge(art, ex, "input", role, finer) if d == "INPUT" else Edge(ex, art, "output", role, finer))
    out_edges.sort(key=lambda e: (e.source, e.target, e.kind, e.role, e.edge_type or ""))
    return LineageGraph(
        nodes=tuple(nodes), edges=tuple(out_edges), truncated=truncated, start_id=start,
        depths={n: depths[n][0] for n in kept},
    )


def _kind_from_edges(start: str, walked: dict[str, set[_EdgeKey]]) -> str | None:
    for edges in walked.values():
        for ex, _, art, _, _ in edges:
            if art == start:
                return "artifact"
            if ex == start:
                return "execution"
    return None
