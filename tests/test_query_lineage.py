"""Lineage walks: diamonds, a 1,000-hop chain with hop limits, wide fan-out, size limits."""

from __future__ import annotations

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
