"""The recording primitives ``@track``, ``run()`` and the Keras callback are built on.

Use it when a decorator does not fit (callbacks, loops you do not own)::

    from producer import recorder
    h = recorder.start_execution("Trainer", name="fit", parameters={"epochs": 3},
                                 inputs=[(train_ds, "train")])
    h.log_metrics({"loss": 0.31, "acc": 0.88}, step=1)   # one MetricsLogged event
    h.add_output(Model("models/m1"), role="model")       # ArtifactRecorded now, edge at end
    h.complete()                                         # or h.fail(exc)

Contract, for every function and method here:

* Never raises into the caller: a recording error is logged (``metatrail.producer``) and
  the call returns (``None`` where a value was expected) — unless ``settings.strict``, in
  which case it raises (a ``MetatrailError`` or the underlying error).
* Non-blocking and durable: each call appends its events to the local spool (an append-only
  journal in front of the SQLite outbox) before it returns; delivery happens in the
  background relay. Nothing waits for Kafka or the store.
* No ``with`` block needed. ``handle.activate()`` (or ``with handle:``) makes it the
  *current* execution, so ``log_metric`` / ``log_artifact`` / nested ``@track`` calls in
  that context attach to it; ``with handle:`` also completes it, or fails it with the
  exception (which propagates unchanged).
* Contexts: an execution started inside ``run(...)`` is associated with the run's contexts
  (pass ``scope=`` to choose another); its events carry the root run id as ``run_id``.
* A handle is thread-safe; ``complete``/``fail`` are idempotent (the first one wins).

Edges: inputs given to ``start_execution`` travel on ``ExecutionStarted``; inputs and
outputs added later travel on the terminal event (their ``ArtifactRecorded`` is spooled at
once).
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Union
from uuid import UUID

from producer import emitter
from producer.artifacts import Artifact
from producer.build import build, make
from producer.capture import environment as current_environment
from producer.context import _EXECUTION, RunScope, current_run
from schemas.events import (
    ArtifactRecorded,
    ArtifactRef,
    CodeVersion,
    Environment,
    ErrorInfo,
    ExecutionCached,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    MetricPoint,
    MetricsLogged,
)
from schemas.ids import new_id
from schemas.values import Properties, typed

log = logging.getLogger("metatrail.producer")

ArtifactArg = Union[Artifact, tuple[Artifact, str]]
_UTC = timezone.utc
MAX_TRACEBACK_CHARS = 20_000
MAX_MESSAGE_CHARS = 10_000

#: Input artifacts this process already recorded, per tuple of context ids (keyed by the
#: tuple's identity, which the entry keeps alive, so no UUID is hashed but the artifact's).
_RECORDED_INPUTS: dict[int, tuple[tuple[UUID, ...], set[UUID]]] = {}
_RECORDED_LIMIT = 10_000
#: Guards the handles' short critical sections (one lock for all: creating one per call costs).
_HANDLE_LOCK = threading.Lock()


def report(what: str, exc: BaseException) -> None:
    """Log a recording failure, or raise it in strict mode (see module doc)."""
    if emitter.is_strict():
        raise exc
    emitter.note_error(what, exc)


def _pairs(items: Iterable[ArtifactArg], default_role: str = "") -> list[tuple[Artifact, str]]:
    out = []
    for item in items:
        if isinstance(item, tuple):
            out.append((item[0], item[1]))
        else:
            out.append((item, default_role))
    return out


def artifact_event(
    artifact: Artifact,
    *,
    as_output: bool,
    scope: RunScope | None,
    occurred_at: datetime | None = None,
) -> ArtifactRecorded | None:
    """The ``ArtifactRecorded`` event of ``artifact`` (fixing its id), or ``None`` when this
    process already recorded this input artifact in these contexts."""
    artifact_id = artifact.resolve_id(as_output=as_output)
    context_ids = scope.context_ids if scope is not None else ()
    if not as_output:
        entry = _RECORDED_INPUTS.get(id(context_ids))
        if entry is None or entry[0] is not context_ids:
            if len(_RECORDED_INPUTS) > _RECORDED_LIMIT:
                _RECORDED_INPUTS.clear()
            entry = _RECORDED_INPUTS[id(context_ids)] = (context_ids, set())
        if artifact_id in entry[1]:
            return None
        if len(entry[1]) > _RECORDED_LIMIT:
            entry[1].clear()
        entry[1].add(artifact_id)
    return build(
        ArtifactRecorded,
        occurred_at,
        run_id=scope.run_id if scope is not None else None,
        artifact_id=artifact_id,
        type=artifact.type,
        uri=artifact.uri,
        digest=artifact.digest,
        state=artifact.state,
        name=artifact.name,
        version=artifact.version,
        properties=artifact.properties,
        custom_properties=artifact.custom_properties,
        context_ids=list(context_ids),
    )


def _record_artifacts(
    pairs: list[tuple[Artifact, str]],
    *,
    as_output: bool,
    scope: RunScope | None,
    events: list[Any],
    occurred_at: datetime | None = None,
) -> list[ArtifactRef]:
    refs = []
    for artifact, role in pairs:
        event = artifact_event(artifact, as_output=as_output, scope=scope, occurred_at=occurred_at)
        if event is not None:
            events.append(event)
        refs.append(
            make(ArtifactRef, artifact_id=artifact.resolve_id(as_output=as_output), role=role)
        )
    return refs


def metric_points(values: Mapping[str, Any], step: int | None) -> list[MetricPoint]:
    now = datetime.now(_UTC)
    step = None if step is None else int(step)
    return [
        make(MetricPoint, key=str(k), value=float(v), step=step, timestamp=now)
        for k, v in values.items()
    ]


class ExecutionHandle:
    """One execution being recorded; see the module doc for the contract."""

    def __init__(
        self,
        execution_id: UUID,
        type: str,
        name: str | None,
        scope: RunScope | None,
        fingerprint: str | None,
    ) -> None:
        self.execution_id = execution_id
        self.type = type
        self.name = name
        self.scope = scope
        self.fingerprint = fingerprint
        self.outputs: list[tuple[Artifact, str]] = []
        self._late_inputs: list[ArtifactRef] = []
        self._output_refs: list[ArtifactRef] = []
        self._params: Properties = {}
        self._custom: Properties = {}
        self.done = False

    # --- while running ----------------------------------------------------------------
    def add_input(self, artifact: Artifact, role: str = "") -> None:
        """Record ``artifact`` as an input (edge sent with the terminal event)."""
        try:
            events: list[Any] = []
            refs = _record_artifacts(
                [(artifact, role)], as_output=False, scope=self.scope, events=events
            )
            if events:
                emitter.emit(events)
            with _HANDLE_LOCK:
                self._late_inputs.extend(refs)
        except Exception as exc:
            report("add_input", exc)

    def add_output(self, artifact: Artifact, role: str = "") -> None:
        """Record ``artifact`` as an output now (edge sent with the terminal event)."""
        try:
            events: list[Any] = []
            refs = _record_artifacts(
                [(artifact, role)], as_output=True, scope=self.scope, events=events
            )
            emitter.emit(events)
            with _HANDLE_LOCK:
                self._output_refs.extend(refs)
                self.outputs.append((artifact, role))
        except Exception as exc:
            report("add_output", exc)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step)

    def log_metrics(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Spool one ``MetricsLogged`` event with a point per key (NaN/inf allowed)."""
        try:
            if not values:
                return
            emitter.emit(
                [
                    build(
                        MetricsLogged,
                        run_id=self._run_id(),
                        execution_id=self.execution_id,
                        points=metric_points(values, step),
                    )
                ]
            )
        except Exception as exc:
            report("log_metrics", exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add parameters; they travel with the terminal event."""
        try:
            from producer.capture import summarise

            with _HANDLE_LOCK:
                self._params.update(typed({k: summarise(v) for k, v in params.items()}))
        except Exception as exc:
            report("log_params", exc)

    def set_custom_properties(self, values: Mapping[str, Any]) -> None:
        """Add custom properties; they travel with the terminal event."""
        try:
            with _HANDLE_LOCK:
                self._custom.update(typed(dict(values)))
        except Exception as exc:
            report("set_custom_properties", exc)

    # --- the end ----------------------------------------------------------------------
    def complete(
        self,
        outputs: Iterable[ArtifactArg] = (),
        custom_properties: Mapping[str, Any] | None = None,
    ) -> None:
        """Record the outputs and mark the execution COMPLETE."""
        try:
            with _HANDLE_LOCK:
                if self.done:
                    return
                self.done = True
            events: list[Any] = []
            now = datetime.now(_UTC)
            pairs = _pairs(outputs)
            refs = _record_artifacts(
                pairs, as_output=True, scope=self.scope, events=events, occurred_at=now
            )
            self.outputs.extend(pairs)
            if custom_properties:
                self._custom.update(typed(dict(custom_properties)))
            events.append(
                self._terminal(ExecutionCompleted, self._output_refs + refs, occurred_at=now)
            )
            emitter.emit(events)
        except Exception as exc:
            report("complete", exc)

    def fail(self, exc: BaseException) -> None:
        """Mark the execution FAILED with ``exc``'s type, message and traceback. Does not
        raise ``exc`` (the caller re-raises it)."""
        try:
            with _HANDLE_LOCK:
                if self.done:
                    return
                self.done = True
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            error = ErrorInfo(
                type=f"{type(exc).__module__}.{type(exc).__qualname__}",
                message=str(exc)[:MAX_MESSAGE_CHARS],
                traceback=tb[-MAX_TRACEBACK_CHARS:],
            )
            emitter.emit([self._terminal(ExecutionFailed, self._output_refs, error=error)])
        except Exception as err:
            report("fail", err)

    def _terminal(self, cls: type[Any], outputs: list[ArtifactRef], **extra: Any) -> Any:
        return build(
            cls,
            run_id=self._run_id(),
            execution_id=self.execution_id,
            type=self.type,
            name=self.name,
            context_ids=list(self.scope.context_ids) if self.scope else [],
            parameters=self._params,
            custom_properties=self._custom,
            fingerprint=self.fingerprint,
            inputs=self._late_inputs,
            outputs=outputs,
            **extra,
        )

    def _run_id(self) -> UUID | None:
        return self.scope.run_id if self.scope is not None else None

    # --- as the current execution -----------------------------------------------------
    @contextmanager
    def activate(self) -> Iterator[ExecutionHandle]:
        """Make this the current execution for the ``with`` body (does not end it)."""
        token = _EXECUTION.set(self)
        try:
            yield self
        finally:
            _EXECUTION.reset(token)

    def __enter__(self) -> ExecutionHandle:
        self._token = _EXECUTION.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        _EXECUTION.reset(self._token)
        if exc is not None:
            self.fail(exc)
        else:
            self.complete()


def start_execution(
    type: str,
    name: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    inputs: Iterable[ArtifactArg] = (),
    *,
    scope: RunScope | None = None,
    custom_properties: Mapping[str, Any] | None = None,
    code_version: CodeVersion | None = None,
    environment: Environment | None = None,
    fingerprint: str | None = None,
    trigger_id: UUID | None = None,
    execution_id: UUID | None = None,
    typed_parameters: Properties | None = None,
) -> ExecutionHandle:
    """Spool ``ExecutionStarted`` (plus ``ArtifactRecorded`` for each input) and return the
    handle. ``parameters`` are plain values (summarised); ``typed_parameters`` are already
    typed. ``environment`` defaults to this process's. Never raises (see module doc): on a
    recording error the returned handle still works and records what it can."""
    scope = current_run() if scope is None else scope
    handle = ExecutionHandle(execution_id or new_id(), type, name, scope, fingerprint)
    try:
        if typed_parameters is None:
            from producer.capture import summarise

            typed_parameters = typed({k: summarise(v) for k, v in (parameters or {}).items()})
        events: list[Any] = []
        now = datetime.now(_UTC)
        refs = _record_artifacts(
            _pairs(inputs), as_output=False, scope=scope, events=events, occurred_at=now
        )
        events.append(
            build(
                ExecutionStarted,
                now,
                run_id=scope.run_id if scope is not None else None,
                execution_id=handle.execution_id,
                type=type,
                name=name,
                context_ids=list(scope.context_ids) if scope is not None else [],
                parameters=typed_parameters,
                custom_properties=typed(dict(custom_properties)) if custom_properties else {},
                code_version=code_version,
                environment=environment or current_environment(),
                fingerprint=fingerprint,
                trigger_id=trigger_id,
                inputs=refs,
            )
        )
        emitter.emit(events)
    except Exception as exc:
        report("start_execution", exc)
    return handle


def record_cached(
    type: str,
    name: str | None,
    *,
    cached_from: UUID,
    inputs: Iterable[ArtifactArg],
    outputs: Iterable[ArtifactArg],
    fingerprint: str | None,
    parameters: Properties | None = None,
    custom_properties: Mapping[str, Any] | None = None,
    code_version: CodeVersion | None = None,
    scope: RunScope | None = None,
) -> UUID | None:
    """Spool an ``ExecutionCached`` execution that reused ``cached_from``'s outputs (which
    are attributed to the current run's contexts too). Returns its id (``None`` on error)."""
    scope = current_run() if scope is None else scope
    try:
        events: list[Any] = []
        in_refs = _record_artifacts(_pairs(inputs), as_output=False, scope=scope, events=events)
        out_refs = _record_artifacts(_pairs(outputs), as_output=True, scope=scope, events=events)
        execution_id = new_id()
        events.append(
            build(
                ExecutionCached,
                run_id=scope.run_id if scope is not None else None,
                execution_id=execution_id,
                type=type,
                name=name,
                context_ids=list(scope.context_ids) if scope is not None else [],
                parameters=parameters or {},
                custom_properties=typed(dict(custom_properties)) if custom_properties else {},
                code_version=code_version,
                environment=current_environment(),
                fingerprint=fingerprint,
                inputs=in_refs,
                outputs=out_refs,
                cached_from=cached_from,
            )
        )
        emitter.emit(events)
        return execution_id
    except Exception as exc:
        report("record_cached", exc)
        return None
