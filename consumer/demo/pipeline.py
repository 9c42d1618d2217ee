"""One day of the demo: the upstream systems export their data, the graph runs the rest.

Inside a run context (``shoe-ctr/day-N-<stamp>`` under the ``shoe-ctr`` pipeline) two
tracked calls export the day's impression log and the catalog's feature spec (a fresh
snapshot file each day, identical in content while the catalog does not change). Those
artifacts trigger ExampleGen and SchemaGen, whose outputs trigger the next steps, and so on
to the Pusher. Whoever runs the triggers — the in-process worker or a ``metatrail worker``
process — this module only watches the store until the day's seven steps have ended,
reporting each as the store records it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from metatrail.consumer.demo import analysis, components, data
from metatrail.consumer.query.domain import Artifact as StoredArtifact
from metatrail.consumer.query.store import Store
from metatrail import Artifact, flush, run, track

#: Called as each step ends: (day, step type, state, seconds).
Progress = Callable[[int, str, str, float], None]
STEPS = ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer", "Evaluator", "Pusher")
TERMINAL = frozenset({"COMPLETE", "CACHED", "FAILED", "CANCELED"})
POLL_S = 0.2


@dataclass
class DayResult:
    """What one day's run recorded, read back from the store."""

    day: int
    run_name: str
    states: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    execution_ids: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, StoredArtifact] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    pushed: bool = False
    push_reason: str = ""

    @property
    def model_id(self) -> str | None:
        model = self.outputs.get("Trainer")
        return model.id if model is not None else None


@track(type="ImpressionExport")
def export_impressions(workspace: str, day: int, rows: int = 20_000, seed: int = 7) -> Artifact:
    """The event log's daily export of impressions (deterministic per day and seed)."""
    path = Path(workspace) / "raw" / f"impressions-day{day}.csv"
    data.write_csv(data.generate(day, rows=rows, seed=seed), path)
    return Artifact(str(path), type="ImpressionLog", name="impressions", version=f"day-{day}", properties={"day": day})


@track(type="CatalogExport")
def export_feature_spec(workspace: str, day: int) -> Artifact:
    """The catalog's daily snapshot of its feature spec (same content while it is unchanged)."""
    path = Path(workspace) / "config" / f"day-{day}" / "feature_spec.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(analysis.feature_spec(), indent=1, sort_keys=True))
    return Artifact(str(path), type="FeatureSpec", name="shoe-catalog-features", version=f"day-{day}")


def land(workspace: Path, day: int, run_name: str, rows: int, seed: int) -> None:
    """Export the day's inputs inside the day's run (the feature spec first, so the schema
    is there before the trainer needs it)."""
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / components.WORKSPACE_MARKER).write_text("metatrail demo workspace\n")
    with run(run_name, pipeline=components.PIPELINE):
        export_feature_spec(str(workspace), day)
        export_impressions(str(workspace), day, rows=rows, seed=seed)


def _day_executions(store: Store, since: datetime) -> dict[str, Any]:
    """The newest execution of each step type created since ``since``."""
    page = store.executions(f"context.name = '{components.PIPELINE}'", order_by="created_at", limit=1000)
    found: dict[str, Any] = {}
    for ex in page.items:
        if ex.type in STEPS and ex.created_at is not None and ex.created_at >= since:
            found[ex.type] = ex
    return found


def _outputs(store: Store, execution_id: str) -> list[StoredArtifact]:
    graph = store.lineage(execution_id, "downstream", max_hops=1)
    ids = {e.target for e in graph.edges if e.kind == "output" and e.source == execution_id}
    return [n for n in graph.nodes if n.id in ids and isinstance(n, StoredArtifact)]


def watch_day(
    store: Store, result: DayResult, since: datetime, *, done: Callable[[], bool], timeout_s: float,
    progress: Progress | None = None,
) -> None:
    """Poll the store until every step of the day has ended (or ``done()`` says nothing
    more will run, or ``timeout_s`` passes), reporting each step once as it ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        finished = done()
        if finished:
            flush(timeout_s=30)
        for step, ex in _day_executions(store, since).items():
            if step in result.states or ex.state not in TERMINAL:
                continue
            result.states[step] = ex.state
            result.execution_ids[step] = ex.id
            ended = ex.ended_at or ex.updated_at or ex.created_at
            result.seconds[step] = (ended - ex.started_at).total_seconds() if ex.started_at and ended else 0.0
            if progress is not None:
                progress(result.day, step, ex.state, result.seconds[step])
        if len(result.states) == len(STEPS) or finished or time.monotonic() > deadline:
            return
        time.sleep(POLL_S)


def read_results(store: Store, result: DayResult) -> None:
    """Fill the day's outputs, anomalies and push decision from the store."""
    for step, execution_id in result.execution_ids.items():
        outs = _outputs(store, execution_id)
        if outs:
            result.outputs[step] = outs[0]
    anomalies = result.outputs.get("ExampleValidator")
    if anomalies is not None and anomalies.uri:
        result.anomalies = json.loads(Path(anomalies.uri).read_text())
    pushed = result.outputs.get("Pusher")
    if pushed is not None:
        result.pushed = bool(pushed.properties.get("pushed"))
        result.push_reason = str(pushed.properties.get("reason", ""))


def day_start() -> datetime:
    return datetime.now(timezone.utc)
