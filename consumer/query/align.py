"""Align two sides of a diff step by step (:mod:`metatrail.consumer.query.sides`).

Top-down from the targets: the two targets' producers are paired; an aligned pair of
executions pairs its inputs and outputs by (role, type); the producers of two aligned
inputs are paired when their types agree; the readers of two aligned artifacts (observers,
consumers) by (role, type, name). Within one (role, type) group, artifacts pair by id, then
uri, name or digest when that is unique on both sides, then a last one with a last one.

What top-down leaves unpaired (a step inserted upstream breaks the chain of roles) is
paired next by identity (the same execution on both sides), then by (kind, type, name) when
that is unique on both sides, and the walk continues from there. What is left is a step
only one side has. Nothing is paired on type alone: two sides that share no step names are
reported as different, not matched by guesswork.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from metatrail.consumer.query.domain import Artifact, Context, Execution
from metatrail.consumer.query.sides import Side


@dataclass
class ArtMatch:
    """Two aligned artifact ids (or one, where a side lacks it) in a (role, type) slot."""

    role: str
    type: str | None
    a: str | None
    b: str | None


@dataclass
class StepMatch:
    """Two aligned execution ids (or one), with their aligned inputs and outputs."""

    a: str | None
    b: str | None
    inputs: list[ArtMatch] = field(default_factory=list)
    outputs: list[ArtMatch] = field(default_factory=list)


def pair_items(a: Sequence[str], b: Sequence[str], keys: Sequence[Callable[[str], Hashable]],
               last_resort: bool = True) -> list[tuple[str | None, str | None]]:
    """Pair ids: equal ids first; then, for each key function in turn, ids whose key is
    not None and unique among the unpaired on both sides; then (``last_resort``) one last
    id with one last id. Unpaired ids come back with None on the other side."""
    set_a, set_b = set(a), set(b)
    pairs: list[tuple[str | None, str | None]] = [(x, x) for x in sorted(set_a & set_b)]
    left_a, left_b = sorted(set_a - set_b), sorted(set_b - set_a)
    for key in keys:
        ka: dict[Hashable, list[str]] = {}
        kb: dict[Hashable, list[str]] = {}
        for x in left_a:
            ka.setdefault(key(x), []).append(x)
        for x in left_b:
            kb.setdefault(key(x), []).append(x)
        for k, xs in ka.items():
            if k is not None and len(xs) == 1 and len(kb.get(k, ())) == 1:
                pairs.append((xs[0], kb[k][0]))
        paired_a = {p[0] for p in pairs}
        paired_b = {p[1] for p in pairs}
        left_a = [x for x in left_a if x not in paired_a]
        left_b = [x for x in left_b if x not in paired_b]
    if last_resort and len(left_a) == 1 and len(left_b) == 1:
        pairs.append((left_a[0], left_b[0]))
        left_a, left_b = [], []
    pairs.extend((x, None) for x in left_a)
    pairs.extend((None, x) for x in left_b)
    return pairs


class _Aligner:
    def __init__(self, a: Side, b: Side) -> None:
        self.a, self.b = a, b
        self.steps: list[StepMatch] = []
        self.of_a: dict[str, StepMatch] = {}
        self.of_b: dict[str, StepMatch] = {}
        self.queue: deque[StepMatch] = deque()

    def pair(self, xa: str | None, xb: str | None) -> None:
        if (xa is not None and xa in self.of_a) or (xb is not None and xb in self.of_b):
            return
        m = StepMatch(xa, xb)
        self.steps.append(m)
        if xa is not None:
            self.of_a[xa] = m
        if xb is not None:
            self.of_b[xb] = m
        if xa is not None and xb is not None:
            self.queue.append(m)

    def drain(self) -> None:
        while self.queue:
            m = self.queue.popleft()
            assert m.a is not None and m.b is not None
            m.inputs = self.artifacts(self.a.inputs.get(m.a, []), self.b.inputs.get(m.b, []))
            m.outputs = self.artifacts(self.a.outputs.get(m.a, []), self.b.outputs.get(m.b, []))
            for am in m.inputs:
                self.follow(am, producers=True)
            for am in m.outputs:
                self.follow(am, producers=False)

    def artifacts(self, la: Sequence[tuple[str, str]], lb: Sequence[tuple[str, str]]) -> list[ArtMatch]:
        """Pair two executions' (role, artifact) lists by (role, type)."""
        groups: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        for side, items, i in ((self.a, la, 0), (self.b, lb, 1)):
            for role, art in items:
                groups.setdefault((role, side.artifact(art).type or ""), ([], []))[i].append(art)
        out: list[ArtMatch] = []
        keys = [self.key_of(f) for f in ("uri", "name", "digest")]
        for (role, type_), (xa, xb) in sorted(groups.items()):
            pairs = [(xa[0], xb[0])] if len(xa) == 1 and len(xb) == 1 else pair_items(xa, xb, keys)
            out.extend(ArtMatch(role, type_ or None, pa, pb) for pa, pb in pairs)
        return out

    def key_of(self, *field_names: str) -> Callable[[str], Hashable]:
        """A key function: these fields of the node with that id on either side (None
        when they are all unknown)."""
        a_nodes, b_nodes = self.a.nodes, self.b.nodes

        def key(x: str) -> Hashable:
            node = a_nodes.get(x) or b_nodes.get(x)
            if node is None:
                return None
            if len(field_names) == 1:
                return getattr(node, field_names[0], None)
            values = tuple([getattr(node, f, None) for f in field_names])
            return None if values.count(None) == len(values) else values
        return key

    def follow(self, am: ArtMatch, producers: bool) -> None:
        """From two aligned artifacts to their producers and their readers."""
        if am.a is None or am.b is None:
            return
        if producers:
            pa, pb = self.a.producer.get(am.a), self.b.producer.get(am.b)
            if (pa in self.a.places and pb in self.b.places and pa not in self.of_a and pb not in self.of_b
                    and self.a.execution(pa).type == self.b.execution(pb).type):
                self.pair(pa, pb)
        groups: dict[tuple[str, str, str], tuple[list[str], list[str]]] = {}
        for side, art, i in ((self.a, am.a, 0), (self.b, am.b, 1)):
            for role, ex in side.readers.get(art, []):
                node = side.execution(ex)
                groups.setdefault((role, node.type or "", node.name or ""), ([], []))[i].append(ex)
        for xa, xb in groups.values():
            for pa, pb in pair_items(xa, xb, []):
                if pa is not None and pb is not None:
                    self.pair(pa, pb)

    def leftovers(self) -> bool:
        """Pair what top-down left: the same execution on both sides, then (kind, type,
        name) unique on both sides. True when anything was paired."""
        left_a = [x for x in self.a.places if x not in self.of_a]
        left_b = [x for x in self.b.places if x not in self.of_b]

        def ident(side: Side) -> Callable[[str], Hashable]:
            return lambda x: (side.places[x].kind, side.execution(x).type, side.execution(x).name)

        ka = {x: ident(self.a)(x) for x in left_a}
        kb = {x: ident(self.b)(x) for x in left_b}
        before = len(self.steps)
        for x in sorted(set(left_a) & set(left_b)):
            self.pair(x, x)
        for key in sorted({k for k in ka.values()}, key=repr):
            xa = [x for x, k in ka.items() if k == key and x not in self.of_a]
            xb = [x for x, k in kb.items() if k == key and x not in self.of_b]
            if len(xa) == 1 and len(xb) == 1:
                self.pair(xa[0], xb[0])
        return len(self.steps) > before


def align(a: Side, b: Side) -> tuple[ArtMatch | None, list[StepMatch]]:
    """The aligned target artifacts (None unless both targets are artifacts) and every
    step of either side, paired where possible."""
    al = _Aligner(a, b)
    target: ArtMatch | None = None
    ta, tb = a.target, b.target
    if isinstance(ta, Artifact) and isinstance(tb, Artifact):
        target = ArtMatch("", tb.type, ta.id, tb.id)
        if a.roots and b.roots and a.execution(a.roots[0]).type == b.execution(b.roots[0]).type:
            al.pair(a.roots[0], b.roots[0])
        al.follow(ArtMatch("", tb.type, ta.id, tb.id), producers=False)
    elif isinstance(ta, Execution) and isinstance(tb, Execution):
        if a.roots and b.roots:
            al.pair(a.roots[0], b.roots[0])
    elif isinstance(ta, Context) and isinstance(tb, Context):
        for pa, pb in pair_items(a.roots, b.roots, [al.key_of("type", "name")], last_resort=False):
            if pa is not None and pb is not None:
                al.pair(pa, pb)
    al.drain()
    while al.leftovers():
        al.drain()
    for x in a.places:
        al.pair(x, None)
    for x in b.places:
        al.pair(None, x)
    return target, al.steps


__all__ = ["ArtMatch", "StepMatch", "align", "pair_items"]
