"""``log_metric``, ``log_metrics``, ``log_params``, ``log_artifact``: record from inside a
tracked call (attached to its execution) or, outside any call, inside a run (attached to
the run's context). Outside both, the call is reported as a recording error (logged, or
raised in strict mode). None of them raises into user code otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, TypeVar

from metatrail.producer import emitter, redact, wire
from metatrail.producer.artifacts import Artifact
from metatrail.producer.build import build
from metatrail.producer.capture import summarise
from metatrail.producer.context import current_run
from metatrail.producer.recorder import artifact_record, current_execution
from metatrail.schemas.errors import MetatrailError
from metatrail.schemas.events import ContextUpserted
from metatrail.schemas.ids import new_id_texts
from metatrail.schemas.values import typed

A = TypeVar("A", bound=Artifact)


def _nowhere(what: str) -> None:
    emitter.report(
        what,
        MetatrailError(f"{what}() called outside a tracked call and outside a run; not recorded"),
    )


def log_metrics(values: Mapping[str, Any], step: int | None = None) -> None:
    """Record metric samples (one event). NaN and infinities are kept."""
    handle = current_execution()
    if handle is not None:
        handle.log_metrics(values, step)
        return
    scope = current_run()
    if scope is None:
        _nowhere("log_metrics")
        return
    try:
        if values:
            [event_id] = new_id_texts(1)
            emitter.emit_records(
                [wire.metrics_logged(event_id, wire.now(), scope, None, values, step)]
            )
    except Exception as exc:
        emitter.report("log_metrics", exc)


def log_metric(key: str, value: float, step: int | None = None) -> None:
    """Record one metric sample."""
    log_metrics({key: value}, step)


def log_params(params: Mapping[str, Any]) -> None:
    """Record parameters: on the current execution (sent when it ends), else as properties
    of the current run's context (sent now)."""
    handle = current_execution()
    if handle is not None:
        handle.log_params(params)
        return
    scope = current_run()
    if scope is None:
        _nowhere("log_params")
        return
    try:
        props, custom, _ = redact.node(typed({k: summarise(v) for k, v in params.items()}), {})
        emitter.emit(
            [
                build(
                    ContextUpserted,
                    run_id=scope.run_id,
                    context_id=scope.context_id,
                    type=scope.type,
                    name=scope.name,
                    properties=props,
                    custom_properties=custom,
                )
            ]
        )
    except Exception as exc:
        emitter.report("log_params", exc)


def log_artifact(
    artifact: A, role: str = "", *, direction: Literal["output", "input"] = "output"
) -> A:
    """Record ``artifact`` as an output (default) or input of the current call; outside a
    call, attribute it to the current run. Returns the artifact (for chaining)."""
    handle = current_execution()
    if handle is not None:
        if direction == "input":
            handle.add_input(artifact, role)
        else:
            handle.add_output(artifact, role)
        return artifact
    scope = current_run()
    if scope is None:
        _nowhere("log_artifact")
        return artifact
    try:
        event = artifact_record(artifact, as_output=direction == "output", scope=scope)
        if event is not None:
            emitter.emit_records([event])
    except Exception as exc:
        emitter.report("log_artifact", exc)
    return artifact
