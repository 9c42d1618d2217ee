"""A synthetic TFX-like workload: runs of ExampleGen -> Transform -> Trainer -> Evaluator,
each run with its context, artifacts, INPUT/OUTPUT edges, parameters and metrics."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

from metatrail.schemas import (
    ArtifactRecorded,
    ArtifactRef,
    ContextUpserted,
    Event,
    ExecutionCompleted,
    ExecutionStarted,
    MetricPoint,
    MetricsLogged,
    context_id,
    new_id,
    typed,
)

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
STEPS = ("ExampleGen", "Transform", "Trainer", "Evaluator")
OUTPUT_TYPE = {"ExampleGen": "Examples", "Transform": "TransformGraph", "Trainer": "Model", "Evaluator": "ModelEvaluation"}


def run_events(index: int, rng: random.Random, pipeline: str = "ctr") -> list[Event]:
    """One pipeline run's events, in the order a producer would emit them."""
    when = T0 + timedelta(minutes=index)
    pipe = context_id("Pipeline", pipeline)
    run = context_id("Run", f"{pipeline}-run-{index}")
    contexts = [pipe, run]
    events: list[Event] = [
        ContextUpserted(context_id=pipe, type="Pipeline", name=pipeline, occurred_at=when),
        ContextUpserted(context_id=run, type="Run", name=f"{pipeline}-run-{index}", parent_ids=[pipe],
                        occurred_at=when, properties=typed({"day": index % 30})),
    ]
    produced: dict[str, ArtifactRef] = {}
    inputs_of = {"ExampleGen": [], "Transform": ["ExampleGen"], "Trainer": ["ExampleGen", "Transform"],
                 "Evaluator": ["ExampleGen", "Trainer"]}
    for n, step in enumerate(STEPS):
        t = when + timedelta(seconds=10 * n)
        xid = new_id()
        inputs = [produced[s] for s in inputs_of[step]]
        params = {"seed": index, "lr": round(rng.uniform(0.001, 0.1), 4), "epochs": rng.randint(1, 20)} if step == "Trainer" else {"split": "train"}
        events.append(ExecutionStarted(execution_id=xid, type=step, name=f"{step}-{index}", context_ids=contexts,
                                       parameters=typed(params), inputs=inputs, occurred_at=t, run_id=run))
        aid = new_id()
        uri = f"s3://bucket/{pipeline}/{index}/{step.lower()}"
        events.append(ArtifactRecorded(artifact_id=aid, type=OUTPUT_TYPE[step], uri=uri, digest=f"sha256:{aid.hex}",
                                       properties=typed({"split": "train", "size_bytes": rng.randint(1, 10**9)}),
                                       context_ids=contexts, occurred_at=t + timedelta(seconds=5), run_id=run))
        ref = ArtifactRef(artifact_id=aid, role=OUTPUT_TYPE[step].lower())
        produced[step] = ref
        if step in ("Trainer", "Evaluator"):
            keys = ("loss", "auc") if step == "Trainer" else ("auc", "accuracy")
            events.append(MetricsLogged(execution_id=xid, run_id=run, occurred_at=t + timedelta(seconds=6), points=[
                MetricPoint(key=k, value=rng.random(), step=s, timestamp=t) for k in keys for s in range(3)
            ]))
        events.append(ExecutionCompleted(execution_id=xid, context_ids=contexts, outputs=[ref],
                                         occurred_at=t + timedelta(seconds=7), run_id=run))
    return events


def records_in(events: list[Event]) -> dict[str, int]:
    """Counts in MLMD's sense: artifacts + executions + events (edges)."""
    artifacts = sum(1 for e in events if e.kind == "artifact.recorded")
    executions = sum(1 for e in events if e.kind == "execution.started")
    edges = sum(len(e.inputs) + len(e.outputs) for e in events if e.kind.startswith("execution."))  # type: ignore[union-attr]
    return {"artifacts": artifacts, "executions": executions, "edges": edges,
            "records": artifacts + executions + edges}
