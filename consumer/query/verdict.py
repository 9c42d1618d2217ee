"""The verdict of a diff: the most upstream aligned step where anything changed, the chain
it flowed through to B, what the checks saw, and the largest metric drop.

"Most upstream" is the greatest depth among the lineage steps that changed, were added or
removed. A step with no inputs (an export, a loader: the source of the data) is not a
candidate itself: what it changed reaches the lineage as different data, so the step that
read that data is named, with the source's change as the cause ("ExampleGen read
raw/impressions-day2.csv instead of raw/impressions-day1.csv — ImpressionExport ran with
day=2 instead of 1"). A source whose output did not change did not change anything
downstream, and is only listed among the steps.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from typing import Any

from metatrail.consumer.query.changes import counted_environment
from metatrail.consumer.query.diffmodel import ArtifactPair, MetricDelta, StepPair, ValueChange, Verdict
from metatrail.consumer.query.domain import Artifact
from metatrail.consumer.query.sides import Side

_MOVED = ("changed", "added", "removed")
_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def fmt(value: Any) -> str:
    """A value as a person reads it in one line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    if value == "":
        return '""'
    text = "—" if value is None else str(value)
    return text if len(text) <= 100 else text[:97] + "…"


def short_uris(a: str | None, b: str | None) -> tuple[str, str]:
    """The two uris from one directory above where they part (``raw/x-day1.csv``); a uri
    without the other, by its last two parts."""
    if not a or not b:
        return (posixpath.join(*a.split("/")[-2:]) if a else "—"), (posixpath.join(*b.split("/")[-2:]) if b else "—")
    pa, pb = a.split("/"), b.split("/")
    same = 0
    while same < min(len(pa), len(pb)) - 1 and pa[same] == pb[same]:
        same += 1
    start = max(0, same - 1)
    return posixpath.join(*pa[start:]), posixpath.join(*pb[start:])


def digest_text(art: Artifact | None) -> str:
    if art is None or not art.digest:
        return ""
    algo, _, hexdigest = art.digest.rpartition(":")
    return f" ({algo or 'digest'} {hexdigest[:8]}…)"


def describe_artifacts(p: ArtifactPair) -> tuple[str, str]:
    """How A's and B's artifact of a pair read: short uri (or name) and digest."""
    ua, ub = short_uris(p.a.uri if p.a else None, p.b.uri if p.b else None)
    if p.a is not None and not p.a.uri:
        ua = p.a.name or p.a.id
    if p.b is not None and not p.b.uri:
        ub = p.b.name or p.b.id
    return ua + digest_text(p.a), ub + digest_text(p.b)


def changes_text(changes: Sequence[ValueChange], limit: int = 3, percent: bool = False) -> str:
    parts = []
    for c in changes[:limit]:
        text = f"{c.key} {fmt(c.a)} → {fmt(c.b)}"
        if percent and c.relative is not None:
            text += f" ({c.relative:+.1%})"
        parts.append(text)
    more = len(changes) - limit
    return ", ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _settings(step: StepPair) -> list[str]:
    """Its own changes: parameters, code, environment, state."""
    out = []
    if step.parameters:
        out.append("ran with " + ", ".join(f"{c.key}={fmt(c.b)} instead of {fmt(c.a)}" for c in step.parameters[:3]))
    code = [c for c in step.code if c.key in ("source_hash", "git_commit", "git_dirty")] or list(step.code)
    if code:
        out.append("ran changed code (" + changes_text(code) + ")")
    env = counted_environment(step.environment)
    if env:
        out.append("ran in a changed environment (" + changes_text(env) + ")")
    if step.state is not None:
        out.append(f"ended {step.state.b} (A: {step.state.a})")
    return out


def _phrases(step: StepPair, by_b: dict[str, StepPair]) -> list[str]:
    name = step.type or step.name or "?"
    if step.status == "added":
        return [f"B has a step A lacks: {name}"]
    if step.status == "removed":
        return [f"A's step {name} is not in B"]
    out = []
    for p in step.inputs:
        if p.status not in _MOVED:
            continue
        da, db = describe_artifacts(p)
        role = f" as {p.role}" if p.role else ""
        if p.status == "added":
            text = f"{name} read {db}{role}, which A's run did not read"
        elif p.status == "removed":
            text = f"{name} no longer read {da}{role}"
        else:
            text = f"{name} read {db} instead of {da}"
        cause = _cause(p, by_b)
        out.append(text + (f" — {cause}" if cause else ""))
    out.extend(f"{name} {s}" for s in _settings(step))
    if not out:
        for p in step.outputs:
            if p.status in _MOVED:
                da, db = describe_artifacts(p)
                out.append(f"{name} wrote {db} instead of {da} from the same inputs")
    return out


def _cause(p: ArtifactPair, by_b: dict[str, StepPair]) -> str:
    """What made B's artifact different, when its producer is a changed source step."""
    for step in by_b.values():
        made_it = p.b is not None and any(o.b is not None and o.b.id == p.b.id for o in step.outputs)
        if made_it and step.status == "changed":
            settings = _settings(step)
            return f"{step.type or step.name} {settings[0]}" if settings else ""
    return ""


def _is_source(step: StepPair) -> bool:
    return not step.inputs and step.depth > 1


def _chain(side: Side, execution_id: str) -> tuple[str, ...]:
    chain = [_exec_label(side, execution_id)]
    seen = {execution_id}
    while execution_id in side.feeds:
        consumer, art = side.feeds[execution_id]
        if consumer in seen:
            break
        seen.add(consumer)
        chain += [_art_label(side.artifact(art)), _exec_label(side, consumer)]
        execution_id = consumer
    if isinstance(side.target, Artifact):
        chain.append(_art_label(side.target))
    return tuple(chain)


def _exec_label(side: Side, execution_id: str) -> str:
    x = side.execution(execution_id)
    return x.type or x.name or execution_id


def _art_label(art: Artifact) -> str:
    return " ".join(p for p in (art.type, art.name) if p) or art.id


def _observed(steps: Sequence[StepPair]) -> tuple[str, ...]:
    out = []
    for s in steps:
        if s.kind == "lineage" or s.status not in ("changed", "added"):
            continue
        name = s.type or s.name or "?"
        if s.status == "added":
            out.append(f"{name} ran on B's side only")
            continue
        moved = [p for p in s.outputs if p.status in _MOVED]
        parts = [t for p in moved if (t := changes_text(_story_order(p.properties), limit=4, percent=True))]
        if not parts and moved:
            parts = [f"wrote a different {p.type or 'artifact'}" for p in moved]
        if not parts:
            parts = _settings(s)[:1] or ["read different inputs"]
        out.append(f"{name}: " + "; ".join(parts))
    return tuple(out)


def _story_order(changes: Sequence[ValueChange]) -> list[ValueChange]:
    """Flags first (``drift false → true``, ``pushed true → false``), then numbers by
    movement (as given), then the rest; custom properties after properties. References to
    other nodes (two ids) are left out: they differ whenever the nodes do."""
    def rank(c: ValueChange) -> tuple[bool, int]:
        kind = 0 if isinstance(c.a, bool) or isinstance(c.b, bool) else 1 if c.delta is not None else 2
        return c.key.startswith("custom."), kind
    return sorted((c for c in changes if not (_ID.match(str(c.a)) and _ID.match(str(c.b)))), key=rank)


def largest_drop(metrics: Sequence[MetricDelta]) -> str | None:
    """The slice (or, with no slices, the metric) that fell most, relative to its value
    on A: an AUC falling 0.73 → 0.55 (−24 %) outranks a slice's example count falling
    672 → 618 (−8 %), whatever their units."""
    rows = [(s.delta, m, s.slice, s.a, s.b) for m in metrics for s in m.slices if s.delta is not None]
    if not rows:
        rows = [(m.delta, m, "", m.a, m.b) for m in metrics if m.delta is not None]
    rows = [r for r in rows if r[0] < 0]
    if not rows:
        return None
    delta, m, where, a, b = min(rows, key=lambda r: (_relative(r[0], r[3]), r[1].step, r[1].metric, r[2]))
    label = f"{m.metric}/{where}" if where else m.metric
    return f"{m.step} {label} {fmt(a)} → {fmt(b)} ({delta:+.3g})"


def _relative(delta: float, before: object) -> float:
    """``delta`` as a fraction of ``before`` (the delta itself when that is 0 or not a number)."""
    if isinstance(before, (int, float)) and not isinstance(before, bool) and before:
        return delta / abs(before)
    return delta


def build_verdict(a: Side, b: Side, steps: Sequence[StepPair], target: ArtifactPair | None,
                  metrics: Sequence[MetricDelta]) -> Verdict:
    """The verdict of an aligned diff (see the module's docstring)."""
    by_b = {s.b.id: s for s in steps if s.b is not None}
    candidates = [s for s in steps if s.kind == "lineage" and s.status in ("changed", "added", "removed")
                  and not _is_source(s)]
    observed = _observed(steps)
    drop = largest_drop(metrics)
    if not candidates:
        moved = any(s.status in ("changed", "added", "removed") for s in steps)
        if target is not None and target.status == "changed" and not any(s.kind == "lineage" for s in steps):
            da, db = describe_artifacts(target)
            text = (f"first difference: the {target.type or 'artifact'}s themselves (no step that made them is "
                    f"recorded): {db} instead of {da}")
        elif target is not None and target.status in ("same", "equal") and not moved:
            text = "no difference: A and B have the same lineage and content"
        elif moved:
            text = "no step on the lineage changed; the steps around it did (see below)"
        else:
            text = f"no difference in the {len(steps)} aligned steps"
            if target is not None and target.status == "changed":
                text += f", yet the {target.type or 'artifact'}s differ (their producer is not recorded)"
        return Verdict(text, observed=observed, largest_drop=drop)
    depth = max(s.depth for s in candidates)
    tied = sorted((s for s in candidates if s.depth == depth), key=lambda s: (s.status != "changed", s.key))
    first = tied[0]
    phrases = _phrases(first, by_b) or [f"{first.type or first.name} changed"]
    text = "first difference: " + phrases[0]
    if len(phrases) > 1:
        text += f" (and {len(phrases) - 1} more change{'s' if len(phrases) > 2 else ''} in that step)"
    if len(tied) > 1:
        text += "; at the same depth also " + ", ".join(s.type or s.name or "?" for s in tied[1:])
    side, ex = (b, first.b.id) if first.b is not None else (a, first.a.id)  # type: ignore[union-attr]
    return Verdict(text, first=first.key, chain=_chain(side, ex), observed=observed, largest_drop=drop)


__all__ = ["build_verdict", "changes_text", "describe_artifacts", "fmt", "largest_drop", "short_uris"]
