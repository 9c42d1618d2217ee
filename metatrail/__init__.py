"""metatrail: record ML metadata as a side effect of running code.

    from metatrail import track, run, Dataset, Model, log_metric

    @track
    def train(data: Dataset, epochs: int = 3) -> Model:
        ...
        return Model("models/m1")

    with run("nightly", pipeline="taxi", experiment="baseline"):
        train(Dataset("data/train.csv"))

Recording never blocks on the network and never breaks the program: errors are logged
(``METATRAIL_STRICT=1`` or ``configure(strict=True)`` raises them). Events go to a local
durable spool and from there to the store (``embedded``, the default), Kafka, a team server
(``http``) or a JSONL file; see ``configure``.

This module is the public surface. The three parts behind it are ``metatrail.schemas``
(the event contract), ``metatrail.producer`` (the SDK that runs inside training code) and
``metatrail.consumer`` (the service side). A training environment installs only the base
package: ``Store``, ``step`` and ``latest`` are imported on first use, so importing
``metatrail`` never pulls in SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from metatrail.producer.artifacts import Artifact, Dataset, Metrics, Model, Schema, Statistics
from metatrail.producer.context import Thread, current_run, propagate
from metatrail.producer.emitter import configure, flush
from metatrail.producer.log import log_artifact, log_metric, log_metrics, log_params
from metatrail.producer.recorder import current_execution
from metatrail.producer.runs import run
from metatrail.producer.track import track
from metatrail.schemas.errors import (
    ConfigError,
    EventValidationError,
    FilterError,
    MetatrailError,
    NotFoundError,
    StoreError,
    StoreNotFoundError,
)

if TYPE_CHECKING:
    from metatrail.consumer.query.store import Store
    from metatrail.producer.steps import latest, step

__all__ = [
    "Artifact",
    "ConfigError",
    "Dataset",
    "EventValidationError",
    "FilterError",
    "MetatrailError",
    "Metrics",
    "Model",
    "NotFoundError",
    "Schema",
    "Statistics",
    "Store",
    "StoreError",
    "StoreNotFoundError",
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

#: Names whose modules are imported on first use: the store needs the service extra, and
#: the orchestration module is only for pipelines.
_LAZY = {
    "Store": "metatrail.consumer.query.store",
    "step": "metatrail.producer.steps",
    "latest": "metatrail.producer.steps",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'metatrail' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
