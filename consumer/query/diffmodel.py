"""The domain objects of ``Store.diff``: two lineages aligned step by step, what differs in
each aligned pair, the targets' metrics side by side, and a verdict.

Frozen dataclasses like :mod:`metatrail.consumer.query.domain`; ``Diff.to_json()`` is the
whole structure as plain JSON data (the CLI's ``--json``, and the HTTP API's answer as is).
"A" is the first target, "B" the second: a change reads "from A's value to B's".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from metatrail.consumer.query.domain import Artifact, Context, Execution, _JSON

#: How an artifact pair compares. ``same``: one artifact on both sides; ``equal``: two
#: artifacts with the same content (same digest; other fields, e.g. the uri, may differ);
#: ``changed``: different content (or, without digests, a different uri, version or
#: properties); ``added``: only B has it; ``removed``: only A has it.
ArtifactStatus = Literal["same", "equal", "changed", "added", "removed"]
#: How a step pair compares. ``same``: one execution on both sides (shared lineage);
#: ``unchanged``: two executions, nothing that matters differs (a cache hit is unchanged);
#: ``changed``: parameters, code, environment, state, inputs or outputs differ.
StepStatus = Literal["same", "unchanged", "changed", "added", "removed"]
#: Where a step sits: on the lineage of the target (``lineage``), a check that read the
#: lineage's data without feeding the target (``observer``: statistics, validation), or a
#: step that read the target itself (``consumer``: an evaluation, a push decision).
StepKind = Literal["lineage", "observer", "consumer"]


@dataclass(frozen=True)
class ValueChange(_JSON):
    """One value that differs: ``a`` -> ``b`` (None where a side lacks it). ``delta`` and
    ``relative`` (``delta / |a|``; None when ``a`` is 0) are set for numbers."""

    key: str
    a: Any
    b: Any
    change: Literal["added", "removed", "changed"]
    delta: float | None = None
    relative: float | None = None


@dataclass(frozen=True)
class ArtifactPair(_JSON):
    """An artifact of A aligned with one of B by (role, type) in aligned steps."""

    role: str
    type: str | None
    status: ArtifactStatus
    a: Artifact | None
    b: Artifact | None
    #: uri, digest, version, name, state, type that differ.
    fields: tuple[ValueChange, ...] = ()
    #: Properties (and ``custom.``-prefixed custom properties) that moved: numbers first,
    #: largest relative change first; nested numeric maps are flattened (``slice_auc.x``).
    properties: tuple[ValueChange, ...] = ()


@dataclass(frozen=True)
class CacheOrigin(_JSON):
    """The cache relation of a step pair (set when either side was served from the cache).
    ``b_reused_a``: B's execution reused the outputs of A's (or of the run A reused)."""

    a_state: str | None
    b_state: str | None
    a_cached_from: str | None
    b_cached_from: str | None
    b_reused_a: bool


@dataclass(frozen=True)
class Timing(_JSON):
    """Wall time of each side, seconds (None when unknown)."""

    a_seconds: float | None
    b_seconds: float | None
    delta_seconds: float | None


@dataclass(frozen=True)
class StepPair(_JSON):
    """An execution of A aligned with one of B (or a step only one side has).

    ``key`` names the step's place: from the target upstream, ``<role<Type`` is a hop to the
    producer of an input; ``>role>Type`` a hop to a step that read an artifact without
    feeding the target. ``depth`` counts steps from the target (its producer is 1,
    steps that read the target 0); higher is more upstream."""

    key: str
    kind: StepKind
    depth: int
    type: str | None
    name: str | None
    status: StepStatus
    a: Execution | None
    b: Execution | None
    inputs: tuple[ArtifactPair, ...] = ()
    outputs: tuple[ArtifactPair, ...] = ()
    parameters: tuple[ValueChange, ...] = ()
    code: tuple[ValueChange, ...] = ()
    environment: tuple[ValueChange, ...] = ()
    state: ValueChange | None = None
    cache: CacheOrigin | None = None
    timing: Timing | None = None


@dataclass(frozen=True)
class SliceDelta(_JSON):
    """One slice of a metric (``auc/mens_dress``: slice ``mens_dress``) on both sides."""

    slice: str
    a: float | None
    b: float | None
    delta: float | None
    relative: float | None


@dataclass(frozen=True)
class MetricDelta(_JSON):
    """A metric of the aligned step ``step`` (the target's producer, the target itself, or
    a step that read it) on both sides, with its slices, largest drop first."""

    step: str
    metric: str
    a: float | None
    b: float | None
    delta: float | None
    relative: float | None
    slices: tuple[SliceDelta, ...] = ()

    @property
    def worst(self) -> float:
        """The most negative delta of the overall value and the slices (0 when none fell)."""
        deltas = [d for d in [self.delta, *(s.delta for s in self.slices)] if d is not None]
        return min([0.0, *deltas])


@dataclass(frozen=True)
class Verdict(_JSON):
    """The answer in a few lines. ``text``: the most upstream aligned step where anything
    changed (or why there is no alignment, or that nothing differs); ``first``: that step's
    key; ``chain``: what the change flowed through to B, step and artifact labels in
    order; ``observed``: what the checks and consumers saw change (validation, evaluation,
    push decision); ``largest_drop``: the metric (slice) that fell most."""

    text: str
    first: str | None = None
    chain: tuple[str, ...] = ()
    observed: tuple[str, ...] = ()
    largest_drop: str | None = None


@dataclass(frozen=True)
class Diff(_JSON):
    """Two models, artifacts, executions or run contexts compared along their lineage.

    ``aligned`` is False when the two cannot be aligned (different pipelines): ``note``
    says why and ``steps`` and ``metrics`` are empty. ``steps`` are most upstream first.
    ``truncated``: a lineage walk hit its hop or node limit, so upstream steps are missing."""

    a: Artifact | Execution | Context
    b: Artifact | Execution | Context
    aligned: bool
    verdict: Verdict
    target: ArtifactPair | None = None
    steps: tuple[StepPair, ...] = ()
    metrics: tuple[MetricDelta, ...] = ()
    pipelines: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    note: str | None = None
    truncated: bool = False


__all__ = [
    "ArtifactPair",
    "CacheOrigin",
    "Diff",
    "MetricDelta",
    "SliceDelta",
    "StepPair",
    "Timing",
    "ValueChange",
    "Verdict",
]
