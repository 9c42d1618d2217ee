"""``/diff?a=ID&b=ID``: why B differs from A (two models or other artifacts, executions or
runs; ids by prefix): the verdict, the aligned steps with what differs in each, and the
targets' metrics side by side per slice, largest drop first. ``only=changed`` hides the
steps that did not change; ``props=N`` caps the values listed per artifact or setting.

``/impact/{id}``: what an artifact found bad touched: everything downstream by type
(deployed artifacts and models first, with their state), the executions that read it,
and the registered steps fixed data would start again.

Both are ``Store.diff``/``Store.impact`` (the CLI's and the API's answers); the JSON twin
holds that answer as is (``diff``/``impact``) next to the rows the page shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metatrail.consumer.query.diffmodel import ArtifactPair, Diff, StepPair, ValueChange
from metatrail.consumer.query.lineage import DEFAULT_MAX_HOPS
from metatrail.consumer.query.verdict import describe_artifacts, fmt
from metatrail.consumer.web.ids import short_ids
from metatrail.consumer.web.pages import View
from metatrail.schemas.errors import FilterError

#: A relative change below this is a drop worth marking.
DROP = -0.05
_QUIET = ("same", "unchanged")


def _values(what: str, changes: Sequence[ValueChange], limit: int, prefix: str = "") -> list[dict[str, Any]]:
    out = [{"what": what, "key": prefix + c.key, "a": fmt(c.a), "b": fmt(c.b), "relative": c.relative}
           for c in changes[:limit]]
    if len(changes) > limit:
        out.append({"what": what, "key": f"… {len(changes) - limit} more (props=)", "a": "", "b": "",
                    "relative": None})
    return out


def _pair(what: str, p: ArtifactPair, limit: int) -> list[dict[str, Any]]:
    if p.status == "same" or (p.status == "equal" and not [c for c in p.fields if c.key != "digest"]):
        return []
    da, db = describe_artifacts(p)
    label = f"{p.role}: {p.type or 'artifact'}"
    out = [{"what": what, "key": label, "a": da if p.status != "added" else "", "b": db if p.status != "removed" else "",
            "status": p.status, "relative": None}]
    return out + _values(what, p.properties, limit, f"{p.role}.")


def step_changes(s: StepPair, limit: int) -> list[dict[str, Any]]:
    """What differs in one aligned step, one entry per thing, as the page lists them:
    inputs, outputs (a check's outputs are its statistics), parameters, code version,
    environment, state, cache origin."""
    out: list[dict[str, Any]] = []
    if s.status in _QUIET and s.cache is None:
        return out
    for p in s.inputs:
        out += _pair("input", p, limit)
    for p in s.outputs:
        out += _pair("statistics" if s.kind == "observer" else "output", p, limit)
    out += _values("param", s.parameters, limit)
    out += _values("code", s.code, limit)
    out += _values("environment", s.environment, limit)
    if s.state is not None:
        out.append({"what": "state", "key": "", "a": fmt(s.state.a), "b": fmt(s.state.b), "relative": None})
    if s.cache is not None:
        c = s.cache
        note = "B reused A's output" if c.b_reused_a else ""
        out.append({"what": "cache", "key": note,
                    "a": f"{c.a_state or '—'}" + (f" from {c.a_cached_from}" if c.a_cached_from else ""),
                    "b": f"{c.b_state or '—'}" + (f" from {c.b_cached_from}" if c.b_cached_from else ""),
                    "relative": None})
    return out


def _metric_rows(d: Diff) -> list[dict[str, Any]]:
    rows = []
    for m in d.metrics:
        if m.a is not None or m.b is not None or not m.slices:
            rows.append({"step": m.step, "metric": m.metric, "slice": "", "a": m.a, "b": m.b, "delta": m.delta,
                         "relative": m.relative})
        rows += [{"step": m.step, "metric": m.metric, "slice": s.slice, "a": s.a, "b": s.b, "delta": s.delta,
                  "relative": s.relative} for s in m.slices]
    for r in rows:
        r["drop"] = r["delta"] is not None and r["delta"] < 0 and (r["relative"] is None or r["relative"] < DROP)
    return rows


def diff(view: View) -> dict[str, Any]:
    a, b = view.arg("a", max_length=64), view.arg("b", max_length=64)
    if a is None or b is None:
        raise FilterError("a, b: give two ids (or prefixes) of one kind, e.g. /diff?a=MODEL&b=MODEL")
    depth = view.int_arg("depth", DEFAULT_MAX_HOPS, 0, 100)
    limit = view.int_arg("props", 5, 1, 1000)
    only_changed = view.arg("only", max_length=10) == "changed"
    d = view.store.diff(a, b, max_hops=depth)
    steps = [{"key": s.key, "kind": s.kind, "depth": s.depth, "type": s.type, "name": s.name, "status": s.status,
              "a": s.a.id if s.a else None, "b": s.b.id if s.b else None,
              "a_state": s.a.state if s.a else None, "b_state": s.b.state if s.b else None,
              "changes": step_changes(s, limit)}
             for s in d.steps if not (only_changed and s.status in _QUIET)]
    ids = [d.a.id, d.b.id] + [i for s in steps for i in (s["a"], s["b"])]
    return {"title": f"Diff {d.a.type or d.a.kind}", "diff": d.to_json(), "steps": steps,
            "metric_rows": _metric_rows(d), "only": "changed" if only_changed else "", "props": limit,
            "depth": depth, "short": short_ids(view.store, ids)}


def impact(view: View) -> dict[str, Any]:
    depth = view.int_arg("depth", DEFAULT_MAX_HOPS, 0, 100)
    found = view.store.impact(view.ref, max_hops=depth)
    ids = [found.source.id, *(a.id for a in found.artifacts()), *(x.id for x in found.executions)]
    return {"title": f"Impact of {found.source.type or 'artifact'} {found.source.name or ''}".strip(),
            "impact": found.to_json(), "depth": depth, "short": short_ids(view.store, ids)}


PAGES = [("/diff", "diff.html", diff), ("/impact/{ref}", "impact.html", impact)]
