"""``Store.impact(id)``: the blast radius of an artifact found bad, and how to retire it.

Everything downstream of the artifact (the one lineage walker, downstream), grouped by
type: deployed artifacts first (a ``pushed``/``deployed`` property, or a type named like
a push or deployment), then models (a type ending in ``Model``), then the rest; the
executions that read bad data; and the registered steps that fixed data would start
again: steps of the artifact's pipeline (or of none) with an input slot taking the
artifact's type or the type of anything downstream.

Retiring is a write, so it goes through events: :func:`retire_plan` says what would
change, :func:`retire_events` makes the ``artifact.state_changed`` events (reason, who
asked, and the bad artifact, kept with each retired artifact), which the caller applies
through the one apply path.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from metatrail.consumer.query.domain import RETIRED_STATES, Artifact, Execution, LineageGraph, _JSON
from metatrail.consumer.query.lineage import lineage_graph
from metatrail.consumer.query.raw import Raw
from metatrail.consumer.query.sides import pipeline_names
from metatrail.schemas.events import ArtifactStateChanged
from metatrail.schemas.values import typed

Rank = Literal["deployed", "model", "other"]
_RANKS: dict[str, int] = {"deployed": 0, "model": 1, "other": 2}
#: Type names of deployment records (TFX's PushedModel, InfraBlessing...).
_DEPLOYED_TYPE = re.compile(r"push|deploy|serv|infra", re.IGNORECASE)
#: Properties that say whether an artifact was deployed.
DEPLOYED_PROPERTIES = ("pushed", "deployed")


@dataclass(frozen=True)
class ImpactedArtifact(_JSON):
    """A downstream artifact: ``hops`` edges from the bad one, the type of the step that
    made it, and whether it was deployed (its ``pushed``/``deployed`` property; None
    when it has none)."""

    artifact: Artifact
    hops: int
    made_by: str | None
    deployed: bool | None


@dataclass(frozen=True)
class ImpactGroup(_JSON):
    """The impacted artifacts of one type, nearest first."""

    type: str | None
    rank: Rank
    artifacts: tuple[ImpactedArtifact, ...]


@dataclass(frozen=True)
class RetriggeredStep(_JSON):
    """A registered step that fixed data would start again: ``slots`` are its input
    slots (slot -> type) that take the bad artifact's type or an impacted type, with
    their filters (a new artifact must also match those)."""

    id: str
    name: str
    pipeline: str | None
    policy: str
    slots: dict[str, str]
    filters: dict[str, str | None]
    hops: int


@dataclass(frozen=True)
class RetireChange(_JSON):
    """One artifact's state before and after a retire."""

    id: str
    type: str | None
    name: str | None
    state_from: str
    state_to: str


@dataclass(frozen=True)
class Impact(_JSON):
    """What a bad artifact touched. ``truncated``: the walk hit its hop or node limit."""

    source: Artifact
    groups: tuple[ImpactGroup, ...]
    executions: tuple[Execution, ...]
    steps: tuple[RetriggeredStep, ...]
    pipelines: tuple[str, ...]
    counts: dict[str, int] = field(default_factory=dict)
    truncated: bool = False

    def artifacts(self) -> list[Artifact]:
        """Every impacted artifact (not the source), deployed and models first."""
        return [i.artifact for g in self.groups for i in g.artifacts]


def impact(raw: Raw, source: Artifact, max_hops: int, limit: int) -> Impact:
    """The impact of ``source`` (see the module's docstring)."""
    graph = lineage_graph(raw, source.id, "downstream", max_hops, None, limit)
    made_by = _made_by(graph)
    by_type: dict[str | None, list[ImpactedArtifact]] = {}
    executions = []
    for node in graph.nodes:
        if isinstance(node, Execution):
            executions.append(node)
        elif node.id != source.id:
            item = ImpactedArtifact(node, graph.depths.get(node.id, 0), made_by.get(node.id), _deployed(node))
            by_type.setdefault(node.type, []).append(item)
    groups = [ImpactGroup(t, _rank(t, items), tuple(sorted(items, key=lambda i: (i.hops, i.artifact.id))))
              for t, items in by_type.items()]
    groups.sort(key=lambda g: (_RANKS[g.rank], min(i.hops for i in g.artifacts), g.type or ""))
    hops_of_type: dict[str, int] = {source.type or "": 0}
    for g in groups:
        hops_of_type.setdefault(g.type or "", min(i.hops for i in g.artifacts))
    pipelines = _pipelines(raw, source.id)
    steps = _retriggered(raw, hops_of_type, pipelines)
    items = [i for g in groups for i in g.artifacts]
    counts = {
        "artifacts": len(items),
        "executions": len(executions),
        "deployed": sum(1 for i in items if i.deployed),
        "models": sum(len(g.artifacts) for g in groups if g.rank == "model"),
        "live": sum(1 for i in items if i.artifact.state == "LIVE"),
        "steps": len(steps),
    }
    return Impact(source, tuple(groups), tuple(executions), steps, tuple(pipelines), counts, graph.truncated)


def _made_by(graph: LineageGraph) -> dict[str, str]:
    types = {n.id: n.type for n in graph.nodes if isinstance(n, Execution)}
    return {e.target: types.get(e.source) or "?" for e in graph.edges if e.kind == "output"}


def _deployed(art: Artifact) -> bool | None:
    for name in DEPLOYED_PROPERTIES:
        value = art.properties.get(name, art.custom_properties.get(name))
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return bool(value)
    return None


def _rank(type_: str | None, items: list[ImpactedArtifact]) -> Rank:
    if any(i.deployed is not None for i in items) or (type_ and _DEPLOYED_TYPE.search(type_)):
        return "deployed"
    if type_ and type_.lower().endswith("model"):
        return "model"
    return "other"


def _pipelines(raw: Raw, artifact_id: str) -> list[str]:
    rows = raw.rows("SELECT context_id FROM mt_attributions WHERE artifact_id = ?", (artifact_id,))
    return pipeline_names(raw, (r[0] for r in rows))


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def _retriggered(raw: Raw, hops_of_type: dict[str, int], pipelines: list[str]) -> tuple[RetriggeredStep, ...]:
    out = []
    for sid, name, pipeline, inputs, policy in raw.rows(
            "SELECT id, name, pipeline, inputs, policy FROM mt_steps ORDER BY name, id", ()):
        if pipeline and pipeline not in pipelines:
            continue
        slots = {slot: spec for slot, spec in (_json(inputs) or {}).items() if spec.get("type") in hops_of_type}
        if not slots:
            continue
        out.append(RetriggeredStep(
            id=sid, name=name, pipeline=pipeline, policy=policy,
            slots={k: v["type"] for k, v in sorted(slots.items())},
            filters={k: v.get("filter") for k, v in sorted(slots.items())},
            hops=min(hops_of_type[v["type"]] for v in slots.values()),
        ))
    return tuple(sorted(out, key=lambda s: (s.hops, s.name, s.id)))


def retire_plan(found: Impact, state: str, *, include_source: bool = True) -> tuple[RetireChange, ...]:
    """The state changes a retire would make: every impacted artifact (and the bad one,
    with ``include_source``) not already DELETED/ABANDONED or in ``state``."""
    arts = ([found.source] if include_source else []) + found.artifacts()
    return tuple(RetireChange(a.id, a.type, a.name, a.state, state) for a in arts
                 if a.state != state and a.state not in RETIRED_STATES)


def retire_events(found: Impact, changes: tuple[RetireChange, ...], *, reason: str,
                  requested_by: str) -> list[ArtifactStateChanged]:
    """The ``artifact.state_changed`` events of a retire plan. Each carries the reason
    (the artifact's ``state_reason``) and, as custom properties, who asked
    (``retired_by``) and the bad artifact it descends from (``retired_because_of``)."""
    props = typed({"retired_by": requested_by, "retired_because_of": found.source.id})
    return [ArtifactStateChanged(artifact_id=uuid.UUID(c.id), state=c.state_to, reason=reason,  # type: ignore[arg-type]
                                 custom_properties=props) for c in changes]


__all__ = [
    "DEPLOYED_PROPERTIES",
    "Impact",
    "ImpactGroup",
    "ImpactedArtifact",
    "RetireChange",
    "RetriggeredStep",
    "impact",
    "retire_events",
    "retire_plan",
]
