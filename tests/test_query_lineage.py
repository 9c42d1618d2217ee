"""Lineage walks: diamonds, a 1,000-hop chain with hop limits, wide fan-out, size limits."""

from __future__ import annotations

import random

from sqlalchemy import Engine

from metatrail import Store
from tests.fixtures.graphs import GraphBuilder, chain_graph, fan_out_graph, gid


def _diamond() -> GraphBuilder:
    g = GraphBuilder()
    g.artifact("base", "Dataset", 0)
    for side in ("left", "right"):
        g.artifact(side, "Dataset", 1)
        g.execution(f"{side}-x", "Split", 0.5, inputs=["base"], outputs=[side])
    g.artifact("joined", "Dataset", 3)
    g.execution("join-x", "Join", 2, inputs=["left", "right"], outputs=["joined"])
    return g


def test_diamond_both_ways(engine: Engine) -> None:
    _diamond().apply(engine)
    store = Store(engine)
    up = store.lineage(gid("joined"), "upstream")
    assert {n.name: up.depths[n.id] for n in up.nodes} == {
        "joined": 0, "join-x": 1, "left": 2, "right": 2, "left-x": 3, "right-x": 3, "base": 4}
    assert len(up.edges) == 7 and not up.truncated
    down = store.lineage(gid("base"), "downstream")
    assert {n.id for n in down.nodes} == {n.id for n in up.nodes}
    assert sorted((e.source, e.target) for e in down.edges) == sorted((e.source, e.target) for e in up.edges)
    mid = store.lineage(gid("left"), "both")
    assert sorted(n.name or "" for n in mid.nodes) == ["base", "join-x", "joined", "left", "left-x"]
    from_exec = store.lineage(gid("join-x"), "upstream", max_hops=1)
    assert sorted(n.name or "" for n in from_exec.nodes) == ["join-x", "left", "right"] and from_exec.truncated


def test_thousand_hop_chain_with_hop_limit(engine: Engine) -> None:
    chain_graph(1000).apply(engine, batch=2000)
    store = Store(engine)
    full = store.lineage(gid("a1000"), "upstream", max_hops=2000)
    assert len(full.nodes) == 2001 and len(full.edges) == 2000 and not full.truncated
    assert full.depths[gid("a0")] == 2000
    cut = store.lineage(gid("a1000"), "upstream", max_hops=10)
    assert len(cut.nodes) == 11 and cut.truncated
    assert max(cut.depths.values()) == 10
    exact = store.lineage(gid("a995"), "upstream", max_hops=2 * 995)
    assert not exact.truncated and len(exact.nodes) == 2 * 995 + 1
    down = store.lineage(gid("a0"), "downstream", max_hops=7)
    assert [n.name for n in down.nodes] == ["a0", "x1", "a1", "x2", "a2", "x3", "a3", "x4"] and down.truncated
    assert store.count("artifact", f"upstream_of('{gid('a1000')}', 20)") == 10
    assert store.count("execution", f"downstream_of('{gid('a990')}')") == 10


def test_wide_fan_out_and_size_limit(engine: Engine) -> None:
    fan_out_graph(300).apply(engine)
    store = Store(engine)
    everything = store.lineage(gid("hub"), "downstream")
    assert len(everything.nodes) == 601 and len(everything.edges) == 600 and not everything.truncated
    limited = store.lineage(gid("hub"), "downstream", limit=50)
    assert len(limited.nodes) == 50 and limited.truncated
    assert limited.nodes[0].id == gid("hub") and all(limited.depths[n.id] <= 1 for n in limited.nodes)
    models = store.lineage(gid("hub"), "downstream", types={"Model"})
    assert len(models.nodes) == 301 and models.edges == ()
    one = store.lineage(gid("m7"), "upstream")
    assert [n.name for n in one.nodes] == ["m7", "t7", "hub"]
    assert store.count("artifact", f"downstream_of('{gid('hub')}')") == 300


def _reference(edges: list[tuple[str, str]], start: str, direction: str, max_hops: int) -> tuple[dict[str, int], bool]:
    """Breadth-first distances over (source, target) pairs, and whether a node lies one
    hop beyond ``max_hops``: what ``Store.lineage`` must answer, computed without SQL."""
    nexts: dict[str, set[str]] = {}
    for source, target in edges:
        a, b = (source, target) if direction == "downstream" else (target, source)
        nexts.setdefault(a, set()).add(b)
    depths, frontier, truncated = {start: 0}, [start], False
    for hop in range(1, max_hops + 2):
        frontier = sorted({n for f in frontier for n in nexts.get(f, ()) if n not in depths})
        if hop > max_hops:
            truncated = bool(frontier)
            break
        depths.update((n, hop) for n in frontier)
    return depths, truncated


def test_random_graphs_match_a_reference_walk(engine: Engine) -> None:
    """Random layered graphs (fan-in, fan-out, shared inputs): every hop limit, from
    artifacts and from executions, both ways, gives the reference's nodes, distances,
    edges and ``truncated``, and the frontier counts each node's neighbours left out."""
    rng = random.Random(11)
    g = GraphBuilder()
    layers: list[list[str]] = [[f"a0-{i}" for i in range(4)]]
    for name in layers[0]:
        g.artifact(name, "Dataset", 0)
    pairs: list[tuple[str, str]] = []
    for depth in range(1, 6):
        layer = []
        for i in range(rng.randint(2, 5)):
            inputs = rng.sample([a for lay in layers for a in lay], rng.randint(1, 3))
            outputs = [f"a{depth}-{i}-{k}" for k in range(rng.randint(1, 2))]
            for out in outputs:
                g.artifact(out, "Dataset", depth)
            g.execution(f"x{depth}-{i}", "Step", depth - 0.5, inputs=inputs, outputs=outputs)
            pairs += [(gid(a), gid(f"x{depth}-{i}")) for a in inputs]
            pairs += [(gid(f"x{depth}-{i}"), gid(out)) for out in outputs]
            layer += outputs
        layers.append(layer)
    g.apply(engine)
    store = Store(engine)
    starts = ["a0-0", "a0-3", "x2-0", "x3-1", layers[2][0], layers[5][-1]]
    for start in starts:
        for direction in ("upstream", "downstream"):
            for hops in range(0, 9):
                graph = store.lineage(gid(start), direction, max_hops=hops)  # type: ignore[arg-type]
                depths, truncated = _reference(pairs, gid(start), direction, hops)
                where = f"{start} {direction} {hops}"
                assert graph.depths == depths, where
                assert graph.truncated == truncated, where
                assert sorted((e.source, e.target) for e in graph.edges) == sorted(
                    p for p in pairs if p[0] in depths and p[1] in depths), where
                hidden = {n: (sum(1 for a, b in pairs if b == n and a not in depths),
                              sum(1 for a, b in pairs if a == n and b not in depths)) for n in depths}
                assert {f.id: (f.hidden_upstream, f.hidden_downstream) for f in store.frontier(graph)} == {
                    n: counts for n, counts in hidden.items() if counts != (0, 0)}, where
