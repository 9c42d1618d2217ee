"""Driving the demo pipeline for one day: land the data, run the components in order.

Each day is a run context (``<pipeline>/day-N-<stamp>``) under the pipeline context. The
two things a component needs from earlier runs are found through the store and passed in
as INPUT artifacts, so lineage shows them: the validator's baseline (the pipeline's newest
Statistics before this run) and the pusher's deployed model (the newest PushedModel with
``pushed = true``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from consumer.demo import analysis, components, data
from consumer.query.store import Store
from producer import Artifact, flush, run

#: Called as each step starts and ends: (day, step, status, seconds).
Progress = Callable[[int, str, str, float], None]
STEPS = ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer", "Evaluator", "Pusher")
FLUSH_TIMEOUT_S = 30.0


@dataclass
class DayResult:
    """What one day's run produced (artifacts as the producer returned them)."""

    day: int
    run_name: str
    states: dict[str, str] = field(default_factory=dict)
    execution_ids: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    artifacts: dict[str, Artifact] = field(default_factory=dict)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    evaluation: dict[str, Any] = field(default_factory=dict)
    pushed: bool = False
    push_reason: str = ""


def land_inputs(workspace: Path, day: int, rows: int, seed: int) -> tuple[Artifact, Artifact]:
    """Write the day's impression log and the catalog's feature spec, as the upstream
    systems would. Deterministic bytes: the same day lands the same files."""
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / components.WORKSPACE_MARKER).write_text("metatrail demo workspace\n")
    raw = workspace / "raw" / f"impressions-day{day}.csv"
    data.write_csv(data.generate(day, rows=rows, seed=seed), raw)
    spec = workspace / "config" / "feature_spec.json"
    spec.parent.mkdir(parents=True, exist_ok=True)
    spec.write_text(json.dumps(analysis.feature_spec(), indent=1, sort_keys=True))
    log = Artifact(str(raw), type="ImpressionLog", name="impressions", version=f"day-{day}", properties={"day": day})
    return log, Artifact(str(spec), type="FeatureSpec", name="shoe-catalog-features")


def _previous(store: Store, artifact_type: str, where: str | None = None) -> Artifact | None:
    from producer.cache import to_producer_artifact

    found = store.latest(artifact_type, context=components.PIPELINE, where=where)
    return to_producer_artifact(found) if found is not None else None


def _execution_of(store: Store, run_name: str, step: str) -> tuple[str, str]:
    """(id, state) of the step's execution in this run, as the store has it."""
    page = store.executions(f"context.name = '{run_name}' AND type = '{step}'", order_by="-created_at", limit=1)
    return (page.items[0].id, page.items[0].state) if page.items else ("", "UNKNOWN")


def run_day(
    workspace: Path,
    store_url: str,
    day: int,
    *,
    stamp: str,
    framework: str = "numpy",
    rows: int = 20_000,
    seed: int = 7,
    progress: Progress | None = None,
) -> DayResult:
    """Run the pipeline on ``day``'s data. Blocking; returns when every step's events are
    in the store (so the caller can query it). Raises what a component raises."""
    report = progress or (lambda *_: None)
    result = DayResult(day=day, run_name=f"{components.PIPELINE}/day-{day}-{stamp}")
    raw, spec = land_inputs(workspace, day, rows, seed)
    flush(timeout_s=FLUSH_TIMEOUT_S)
    with Store.open(store_url) as store:
        baseline = _previous(store, "Statistics")
        deployed = _previous(store, "PushedModel", "properties.pushed = TRUE")
    serving = str((workspace / "serving").resolve())
    with Store.open(store_url) as store, run(result.run_name, pipeline=components.PIPELINE):
        calls: list[tuple[str, Callable[[], Artifact]]] = [
            ("ExampleGen", lambda: components.example_gen(raw)),
            ("StatisticsGen", lambda: components.statistics_gen(result.artifacts["ExampleGen"])),
            ("SchemaGen", lambda: components.schema_gen(spec)),
            (
                "ExampleValidator",
                lambda: components.example_validator(
                    result.artifacts["StatisticsGen"], result.artifacts["SchemaGen"], baseline
                ),
            ),
            (
                "Trainer",
                lambda: components.trainer(
                    result.artifacts["ExampleGen"], result.artifacts["SchemaGen"], framework=framework
                ),
            ),
            ("Evaluator", lambda: components.evaluator(result.artifacts["Trainer"], result.artifacts["ExampleGen"])),
            (
                "Pusher",
                lambda: components.pusher(
                    result.artifacts["Trainer"], result.artifacts["Evaluator"], serving, deployed
                ),
            ),
        ]
        for step, call in calls:
            report(day, step, "running", 0.0)
            started = time.perf_counter()
            result.artifacts[step] = call()
            result.seconds[step] = time.perf_counter() - started
            flush(timeout_s=FLUSH_TIMEOUT_S)
            result.execution_ids[step], result.states[step] = _execution_of(store, result.run_name, step)
            report(day, step, result.states[step], result.seconds[step])
    result.anomalies = json.loads(Path(result.artifacts["ExampleValidator"].uri).read_text())
    result.evaluation = json.loads(Path(result.artifacts["Evaluator"].uri).read_text())
    decision = json.loads((Path(result.artifacts["Pusher"].uri) / "decision.json").read_text())
    result.pushed, result.push_reason = bool(decision["pushed"]), str(decision["reason"])
    return result
