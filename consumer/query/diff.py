"""``Store.diff(a, b)``: why are two models (artifacts, executions, runs) different?

Both upstream lineages are walked (:mod:`sides`), aligned step by step (:mod:`align`), each
aligned pair compared (:mod:`changes`), the targets' metrics put side by side with their
slices, and a verdict drawn (:mod:`verdict`). Two targets from different pipelines are not
aligned at all: the diff says so instead of matching steps that only share a type.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from metatrail.consumer.query.align import ArtMatch, StepMatch, align
from metatrail.consumer.query.changes import artifact_pair, step_details, step_status, value_change
from metatrail.consumer.query.compare import last_values
from metatrail.consumer.query.diffmodel import ArtifactPair, Diff, MetricDelta, SliceDelta, StepPair, Verdict
from metatrail.consumer.query.domain import Context, Execution
from metatrail.consumer.query.idrefs import resolve
from metatrail.consumer.query.raw import Raw, load_nodes
from metatrail.consumer.query.sides import Side, add_neighbours, build_side
from metatrail.consumer.query.verdict import build_verdict
from metatrail.schemas.errors import FilterError, NotFoundError

_KIND_ORDER = {"lineage": 0, "observer": 1, "consumer": 2}
_KINDS = ("artifact", "execution", "context")


def diff(raw: Raw, a_ref: str, b_ref: str, max_hops: int, limit: int) -> Diff:
    """Compare ``a_ref`` and ``b_ref`` (ids or unambiguous prefixes of two nodes of one
    kind). Raises ``NotFoundError``/``AmbiguousIdError`` for a bad id, ``FilterError`` for
    two nodes of different kinds."""
    ma, mb = resolve(raw, a_ref, _KINDS), resolve(raw, b_ref, _KINDS)
    if ma.kind != mb.kind:
        raise FilterError(f"diff: {a_ref!r} is {_a(ma.kind)} and {b_ref!r} {_a(mb.kind)}; compare two of one kind")
    nodes = load_nodes(raw, ma.kind, [ma.id, mb.id])
    if ma.id not in nodes or mb.id not in nodes:
        raise NotFoundError(f"no {ma.kind} with id {ma.id if ma.id not in nodes else mb.id!r}")
    ta, tb = nodes[ma.id], nodes[mb.id]
    side_a, side_b = build_side(raw, ta, max_hops, limit), build_side(raw, tb, max_hops, limit)
    pipelines = {"a": side_a.pipelines, "b": side_b.pipelines}
    truncated = side_a.truncated or side_b.truncated
    if side_a.pipelines and side_b.pipelines and not set(side_a.pipelines) & set(side_b.pipelines):
        note = (f"A belongs to pipeline {', '.join(side_a.pipelines)} and B to {', '.join(side_b.pipelines)}: "
                "steps of different pipelines are not aligned")
        return Diff(ta, tb, aligned=False, verdict=Verdict(f"no alignment: {note}"), pipelines=pipelines,
                    note=note, truncated=truncated)
    add_neighbours(raw, side_a, side_b)
    target_match, matches = align(side_a, side_b)
    steps = _unique_keys([_step_pair(side_a, side_b, m) for m in matches])
    steps.sort(key=_step_order)
    target = None
    if target_match is not None:
        target = artifact_pair("target", target_match.type, ta, tb)
    metrics = _metrics(raw, side_a, side_b, steps)
    verdict = build_verdict(side_a, side_b, steps, target, metrics)
    return Diff(ta, tb, aligned=True, verdict=verdict, target=target, steps=tuple(steps), metrics=metrics,
                pipelines=pipelines, counts=dict(sorted(Counter(s.status for s in steps).items())), truncated=truncated)


def _step_order(s: StepPair) -> tuple[Any, ...]:
    """Most upstream first; on one level the lineage, then checks, then consumers, each in
    the order they ran (B's, else A's, creation time), then by key."""
    node = s.b or s.a
    when = node.created_at.isoformat() if node is not None and node.created_at is not None else ""
    return (-s.depth, _KIND_ORDER[s.kind], when, s.key)


def _a(kind: str) -> str:
    return ("an " if kind[0] in "aeiou" else "a ") + kind


def _pairs(a: Side, b: Side, matches: Sequence[ArtMatch]) -> tuple[ArtifactPair, ...]:
    return tuple(artifact_pair(m.role, m.type, a.artifact(m.a) if m.a else None, b.artifact(m.b) if m.b else None)
                 for m in matches)


def _one_sided(side: Side, items: Sequence[tuple[str, str]], is_a: bool) -> list[ArtMatch]:
    out = []
    for role, art in items:
        type_ = side.artifact(art).type
        out.append(ArtMatch(role, type_, art, None) if is_a else ArtMatch(role, type_, None, art))
    return out


def _step_pair(a: Side, b: Side, m: StepMatch) -> StepPair:
    xa = a.execution(m.a) if m.a is not None else None
    xb = b.execution(m.b) if m.b is not None else None
    place = b.places[m.b] if m.b is not None else a.places[m.a]  # type: ignore[index]
    if m.a is not None and m.b is not None:
        inputs, outputs = _pairs(a, b, m.inputs), _pairs(a, b, m.outputs)
    else:
        side, x = (a, m.a) if m.a is not None else (b, m.b)
        inputs = _pairs(a, b, _one_sided(side, side.inputs.get(x, []), side is a))  # type: ignore[arg-type]
        outputs = _pairs(a, b, _one_sided(side, side.outputs.get(x, []), side is a))  # type: ignore[arg-type]
    details = step_details(xa, xb) if xa is not None and xb is not None else {}
    status = step_status(xa, xb, details, inputs + outputs)
    node = xb or xa
    assert node is not None
    return StepPair(key=place.key, kind=place.kind, depth=place.depth,  # type: ignore[arg-type]
                    type=node.type, name=node.name,
                    status=status, a=xa, b=xb, inputs=inputs, outputs=outputs, **details)


def _unique_keys(steps: list[StepPair]) -> list[StepPair]:
    """Suffix ``#2``, ``#3``... to keys that several steps share (two inputs of one role
    and type made by two steps of one type)."""
    from dataclasses import replace

    seen: Counter[str] = Counter()
    out = []
    for s in sorted(steps, key=lambda s: (s.key, s.b.id if s.b else "", s.a.id if s.a else "")):
        seen[s.key] += 1
        out.append(s if seen[s.key] == 1 else replace(s, key=f"{s.key}#{seen[s.key]}"))
    return out


def _metrics(raw: Raw, a: Side, b: Side, steps: Sequence[StepPair]) -> tuple[MetricDelta, ...]:
    """The targets' metrics side by side: those of the target's producer (or the target
    execution, or a run's executions and the run itself) and of the steps that read the
    target. A CACHED execution's metrics are those of the run it reused."""
    def owns(s: StepPair) -> bool:
        if s.kind == "consumer":
            return True
        heads_a, heads_b = set(a.members or a.roots), set(b.members or b.roots)
        return (s.a is not None and s.a.id in heads_a) or (s.b is not None and s.b.id in heads_b)

    owners = [s for s in steps if owns(s)]
    labels = Counter(s.type or s.name or "?" for s in owners)

    def source(x: Execution | None) -> str | None:
        if x is None:
            return None
        return x.cached_from if x.state == "CACHED" and x.cached_from else x.id

    ids = sorted({i for s in owners for i in (source(s.a), source(s.b)) if i is not None})
    values = last_values(raw, "execution_id", ids)
    columns: list[tuple[str, dict[str, float], dict[str, float]]] = []
    for s in owners:
        label = s.type or s.name or "?"
        label = label if labels[label] == 1 else s.key
        columns.append((label, values.get(source(s.a) or "", {}), values.get(source(s.b) or "", {})))
    if isinstance(a.target, Context) and isinstance(b.target, Context):
        runs = last_values(raw, "context_id", [a.target.id, b.target.id])
        columns.append(("run", runs.get(a.target.id, {}), runs.get(b.target.id, {})))
    out = [m for label, va, vb in columns for m in _deltas(label, va, vb)]
    return tuple(sorted(out, key=lambda m: (m.worst, m.step, m.metric)))


def _deltas(label: str, va: dict[str, float], vb: dict[str, float]) -> list[MetricDelta]:
    groups: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for key in sorted(set(va) | set(vb)):
        metric, _, where = key.partition("/")
        groups.setdefault(metric, {})[where] = (va.get(key), vb.get(key))
    out = []
    for metric, by_slice in groups.items():
        overall = by_slice.pop("", (None, None))
        slices = [SliceDelta(w, x, y, *_delta(x, y)) for w, (x, y) in by_slice.items()]
        slices.sort(key=lambda s: (s.delta is None, s.delta if s.delta is not None else 0.0, s.slice))
        out.append(MetricDelta(label, metric, overall[0], overall[1], *_delta(*overall), slices=tuple(slices)))
    return out


def _delta(a: float | None, b: float | None) -> tuple[float | None, float | None]:
    change = value_change("", a, b)
    if change is None:
        return (0.0, 0.0) if a is not None else (None, None)
    return change.delta, change.relative


__all__ = ["diff"]
