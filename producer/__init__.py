"""The metatrail producer SDK: record ML metadata as a side effect of running code.

    from producer import track, run, Artifact, Dataset, Model, log_metric

    @track
    def train(data: Dataset, epochs: int = 3) -> Model:
        ...
        return Model("models/m1")

    with run("nightly", pipeline="taxi", experiment="baseline"):
        train(Dataset("data/train.csv"))

Recording never blocks on the network and never breaks the program (errors are logged;
``configure(strict=True)`` raises them). Events go to a local durable spool and from there
to the store (``embedded``, the default), Kafka or a JSONL file; see ``configure``.
"""

from __future__ import annotations

from typing import Any

from producer.artifacts import Artifact, Dataset, Metrics, Model, Schema, Statistics
from producer.context import Thread, current_execution, current_run, propagate
from producer.emitter import configure, flush
from producer.log import log_artifact, log_metric, log_metrics, log_params
from producer.runs import run
from producer.track import track

__all__ = [
    "Artifact",
    "Dataset",
    "Metrics",
    "Model",
    "Schema",
    "Statistics",
    "Thread",
    "configure",
    "current_execution",
    "current_run",
    "flush",
    "latest",
    "log_artifact",
    "log_metric",
    "log_metrics",
    "log_params",
    "propagate",
    "run",
    "step",
    "track",
]

#: Defined by the orchestration modules, imported on first use (they import this package).
_LAZY = {"step": "producer.steps", "latest": "producer.steps"}


def __getattr__(name: str) -> Any:
    """``step`` and ``latest`` (warm start) live in ``producer.steps``; imported on use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'producer' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
