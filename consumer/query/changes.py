"""What differs between two aligned artifacts or executions (:mod:`metatrail.consumer.query.diffmodel`).

Values compare as Python values, except that a bool never equals a number and NaN equals
NaN. Nested mappings are flattened to dotted keys (``packages.numpy``, ``slice_auc.boots``)
so each leaf is one change. Numbers get a delta and a relative change.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from metatrail.consumer.query.diffmodel import (
    ArtifactPair,
    ArtifactStatus,
    CacheOrigin,
    StepStatus,
    Timing,
    ValueChange,
)
from metatrail.consumer.query.domain import Artifact, Execution

#: Artifact fields compared besides properties.
ARTIFACT_FIELDS = ("uri", "digest", "version", "name", "state", "type")
#: Environment keys listed when they differ but that do not make a step "changed" (the
#: same step on another worker host is the same step).
UNCOUNTED_ENVIRONMENT = frozenset({"host"})
#: Execution states that are the same outcome for a diff (a cache hit did the same work).
_DONE = frozenset({"COMPLETE", "CACHED"})


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def value_change(key: str, a: Any, b: Any) -> ValueChange | None:
    """The change from ``a`` to ``b`` (None when they are the same)."""
    if type(a) is type(b) and a == b:  # the common case first: most values did not move
        return None
    if _same(a, b):
        return None
    change = "added" if a is None else "removed" if b is None else "changed"
    delta = relative = None
    if is_number(a) and is_number(b) and math.isfinite(a) and math.isfinite(b):
        delta = _round(float(b) - float(a))
        relative = _round(delta / abs(a)) if a != 0 else None
    return ValueChange(key, a, b, change, delta, relative)  # type: ignore[arg-type]


def _round(x: float) -> float:
    """12 significant digits: 0.7343 - 0.7374 is -0.0031, not -0.0031000000000001027."""
    return float(f"{x:.12g}")


def flatten(values: Mapping[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys; other values (lists included) as they are."""
    out: dict[str, Any] = {}
    for k, v in (values or {}).items():
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def compare_maps(a: Mapping[str, Any], b: Mapping[str, Any], *, by_movement: bool = False) -> tuple[ValueChange, ...]:
    """The keys whose values differ. Sorted by key, or (``by_movement``) numbers first by
    largest relative change (a change from 0 counts as the largest), then the rest by key."""
    changes = [c for k in sorted(set(a) | set(b)) if (c := value_change(k, a.get(k), b.get(k))) is not None]
    if by_movement:
        changes.sort(key=_movement)
    return tuple(changes)


def _movement(c: ValueChange) -> tuple[int, float, str]:
    if c.delta is None:
        return (1, 0.0, c.key)
    size = math.inf if c.relative is None else abs(c.relative)
    return (0, -size, c.key)


def node_properties(node: Artifact | Execution | None) -> dict[str, Any]:
    """Properties, and custom properties prefixed ``custom.``, flattened."""
    if node is None:
        return {}
    return {**flatten(node.properties), **flatten(node.custom_properties, "custom.")}


def artifact_pair(role: str, type_: str | None, a: Artifact | None, b: Artifact | None) -> ArtifactPair:
    """Compare two aligned artifacts (either may be None: added or removed)."""
    if a is None or b is None:
        status: ArtifactStatus = "added" if a is None else "removed"
        return ArtifactPair(role, type_, status, a, b)
    if a.id == b.id:
        return ArtifactPair(role, type_, "same", a, b)
    fields: list[ValueChange] = []
    for f in ARTIFACT_FIELDS:  # texts or None: plain equality is exact
        va, vb = getattr(a, f), getattr(b, f)
        if va != vb:
            fields.append(ValueChange(f, va, vb, "added" if va is None else "removed" if vb is None else "changed"))
    if (a.properties == b.properties and a.custom_properties == b.custom_properties
            and _plain(a.properties, b.properties, a.custom_properties, b.custom_properties)):
        props: tuple[ValueChange, ...] = ()  # the common case, without flattening
    else:
        props = compare_maps(node_properties(a), node_properties(b), by_movement=True)
    if a.digest and b.digest:
        status = "equal" if a.digest == b.digest else "changed"
    else:
        moved = any(c.key in ("uri", "version", "digest") for c in fields) or bool(props)
        status = "changed" if moved else "equal"
    return ArtifactPair(role, type_, status, a, b, tuple(fields), props)


def _plain(*maps: Mapping[str, Any]) -> bool:
    """No bool among the top-level values (``True == 1`` would hide a change of kind)."""
    for m in maps:
        for v in m.values():
            if v is True or v is False:
                return False
    return True


def step_details(a: Execution, b: Execution) -> dict[str, Any]:
    """Parameters, code, environment, state, cache and timing of two aligned executions
    (keyword arguments of :class:`StepPair`)."""
    state = None
    if a.state != b.state and not {a.state, b.state} <= _DONE:
        state = value_change("state", a.state, b.state)
    cache = None
    if "CACHED" in (a.state, b.state):
        reused = b.cached_from is not None and b.cached_from in (a.id, a.cached_from)
        cache = CacheOrigin(a.state, b.state, a.cached_from, b.cached_from, reused)
    return {
        "parameters": compare_maps(node_properties(a), node_properties(b)),
        "code": compare_maps(flatten(a.code_version), flatten(b.code_version)),
        "environment": compare_maps(flatten(a.environment), flatten(b.environment)),
        "state": state,
        "cache": cache,
        "timing": _timing(a, b),
    }


def _seconds(x: Execution) -> float | None:
    if x.started_at is None or x.ended_at is None:
        return None
    return (x.ended_at - x.started_at).total_seconds()


def _timing(a: Execution, b: Execution) -> Timing:
    sa, sb = _seconds(a), _seconds(b)
    return Timing(sa, sb, None if sa is None or sb is None else sb - sa)


def counted_environment(changes: Sequence[ValueChange]) -> list[ValueChange]:
    """The environment changes that make a step changed (not the host)."""
    return [c for c in changes if c.key not in UNCOUNTED_ENVIRONMENT]


def step_status(a: Execution | None, b: Execution | None, details: Mapping[str, Any],
                pairs: Sequence[ArtifactPair]) -> StepStatus:
    """``same`` (one execution), ``unchanged``, ``changed``, ``added`` or ``removed``."""
    if a is None or b is None:
        return "added" if a is None else "removed"
    if a.id == b.id:
        return "same"
    changed = (details["parameters"] or details["code"] or counted_environment(details["environment"])
               or details["state"] is not None or any(p.status not in ("same", "equal") for p in pairs))
    return "changed" if changed else "unchanged"


__all__ = [
    "artifact_pair",
    "compare_maps",
    "counted_environment",
    "flatten",
    "is_number",
    "node_properties",
    "step_details",
    "step_status",
    "value_change",
]
