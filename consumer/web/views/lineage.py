"""``/lineage/{id}``: the lineage explorer. Centred on a node, one hop each way by
default; ``expand`` adds the neighbours of the nodes the user opened; ``depth`` and
``dir`` widen the walk; ``sel`` names two nodes whose path is highlighted. The page draws
its JSON twin with cytoscape.js (dagre, left to right) and, on each expansion, puts the
new state in the URL and fetches the twin again: any view is a link.

Wide frontiers: each call is capped (``max`` nodes for the walk, ``EXPAND_NODES`` per
expanded node, nearest first), and every node with neighbours left out carries how many
each way (the API's frontier counts), drawn as "+N".
"""

from __future__ import annotations

from typing import Any

from metatrail.consumer.query.domain import Edge, LineageGraph
from metatrail.consumer.query.store import Store
from metatrail.consumer.web.ids import short_ids
from metatrail.consumer.web.pages import View
from metatrail.schemas.errors import FilterError

#: Most nodes of the walk from the centre; most neighbours one expansion adds.
MAX_NODES, EXPAND_NODES = 500, 100
#: Most hops of the walk; most expanded nodes kept in a URL.
MAX_DEPTH, MAX_EXPANDED = 20, 200
DIRECTIONS = {"both": "both", "up": "upstream", "down": "downstream"}


def explore(store: Store, start: str, direction: str, depth: int, expand: list[str], max_nodes: int) -> dict[str, Any]:
    """The view's graph as JSON: the walk from ``start`` united with one hop around each
    expanded node, every edge among the shown nodes, and the frontier counts."""
    graphs = [store.lineage(start, DIRECTIONS[direction], max_hops=depth, limit=max_nodes)]  # type: ignore[arg-type]
    for ref in expand:
        graphs.append(store.lineage(ref, "both", max_hops=1, limit=EXPAND_NODES))
    nodes: dict[str, Any] = {}
    depths: dict[str, int] = {}
    for graph in graphs:
        for node in graph.nodes:
            nodes.setdefault(node.id, node)
    for node_id, hops in graphs[0].depths.items():
        depths[node_id] = hops
    artifacts = [i for i, n in nodes.items() if n.kind == "artifact"]
    executions = [i for i, n in nodes.items() if n.kind == "execution"]
    edges: tuple[Edge, ...] = store.edges_among(artifacts, executions)
    merged = LineageGraph(tuple(nodes.values()), edges, any(g.truncated for g in graphs), graphs[0].start_id, depths)
    hidden = {f.id: (f.hidden_upstream, f.hidden_downstream) for f in store.frontier(merged)}
    short = short_ids(store, nodes)
    return {
        "start": graphs[0].start_id,
        "nodes": [{"id": n.id, "kind": n.kind, "type": n.type, "name": n.name, "state": n.state,
                   "short": short[n.id], "hops": depths.get(n.id), "hidden_up": hidden.get(n.id, (0, 0))[0],
                   "hidden_down": hidden.get(n.id, (0, 0))[1]} for n in nodes.values()],
        "edges": [e.to_json() for e in edges],
        "truncated": merged.truncated,
    }


def lineage(view: View) -> dict[str, Any]:
    store = view.store
    direction = view.arg("dir", "both", max_length=10) or "both"
    if direction not in DIRECTIONS:
        raise FilterError(f"dir: expected both, up or down, got {direction!r}")
    depth = view.int_arg("depth", 1, 0, MAX_DEPTH)
    max_nodes = view.int_arg("max", MAX_NODES, 1, 5000)
    _, start = store.resolve(view.ref, ("artifact", "execution"))
    expand = [store.resolve(ref, ("artifact", "execution"))[1] for ref in view.list_arg("expand", MAX_EXPANDED)]
    selected = view.list_arg("sel", 2)
    graph = explore(store, start, direction, depth, expand, max_nodes)
    centre = next(n for n in graph["nodes"] if n["id"] == start)
    return {"title": f"Lineage of {centre['type'] or ''} {centre['name'] or centre['short']}".strip(),
            "centre": centre, "dir": direction, "depth": depth, "max": max_nodes, "expand": expand,
            "sel": selected, "graph": graph, "max_depth": MAX_DEPTH}


PAGES = [("/lineage/{ref}", "lineage.html", lineage)]
