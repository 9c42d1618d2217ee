"""The recording primitives ``@track``, ``run()`` and the Keras callback are built on.

Use it when a decorator does not fit (callbacks, loops you do not own)::

    from metatrail.producer import recorder
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
import os
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Union
from uuid import UUID

from metatrail.producer import emitter, redact, wire
from metatrail.producer.artifacts import Artifact
from metatrail.producer.build import make
from metatrail.producer.capture import environment as current_environment
from metatrail.producer.context import CURRENT_EXECUTION, RunScope, current_run
from metatrail.schemas.errors import MetatrailError
from metatrail.schemas.events import (
    CodeVersion,
    Environment,
    ErrorInfo,
    ExecutionCached,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    MetricPoint,
)
from metatrail.schemas.ids import new_id_texts
from metatrail.schemas.values import Properties, typed

log = logging.getLogger("metatrail.producer")

ArtifactArg = Union[Artifact, tuple[Artifact, str]]
_UTC = timezone.utc
MAX_TRACEBACK_CHARS = 20_000
MAX_MESSAGE_CHARS = 10_000

#: Input artifacts this process already recorded, per tuple of context ids (keyed by the
#: tuple's identity, which the entry keeps alive, so no UUID is hashed: ids are texts).
_RECORDED_INPUTS: dict[int, tuple[tuple[UUID, ...], set[str]]] = {}
_RECORDED_LIMIT = 10_000
#: Guards the handles' short critical sections (one lock for all: creating one per call costs).
_HANDLE_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _HANDLE_LOCK
    _HANDLE_LOCK = threading.Lock()  # a parent thread may have held it at the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def current_execution() -> ExecutionHandle | None:
    """The tracked call running in this context, or ``None``."""
    return CURRENT_EXECUTION.get()  # type: ignore[return-value]  # only handles are set


def _pairs(items: Iterable[ArtifactArg], default_role: str = "") -> list[tuple[Artifact, str]]:
    out = []
    for item in items:
        if isinstance(item, tuple):
            out.append((item[0], item[1]))
        else:
            out.append((item, default_role))
    return out


def _first_time_input(artifact_id: str, scope: RunScope | None) -> bool:
    """Whether this process has not yet recorded this input artifact in these contexts
    (and remember that it now has)."""
    context_ids = scope.context_ids if scope is not None else ()
    entry = _RECORDED_INPUTS.get(id(context_ids))
    if entry is None or entry[0] is not context_ids:
        if len(_RECORDED_INPUTS) > _RECORDED_LIMIT:
            _RECORDED_INPUTS.clear()
        entry = _RECORDED_INPUTS[id(context_ids)] = (context_ids, set())
    if artifact_id in entry[1]:
        return False
    if len(entry[1]) > _RECORDED_LIMIT:
        entry[1].clear()
    entry[1].add(artifact_id)
    return True


def _edges(
    pairs: list[tuple[Artifact, str]],
    *,
    as_output: bool,
    scope: RunScope | None,
    fresh: list[str] | None = None,
) -> tuple[list[str], list[tuple[Artifact, str]]]:
    """(edge texts, the (artifact, id) pairs that need an ``ArtifactRecorded`` event), fixing
    the artifacts' ids (a new output takes ``fresh[i]``, drawn with the events' ids). Inputs
    already recorded in these contexts need no new event."""
    refs = []
    recorded = []
    for i, (artifact, role) in enumerate(pairs):
        artifact_id = artifact.id_text(as_output=as_output, fresh=fresh[i] if fresh else None)
        if as_output or _first_time_input(artifact_id, scope):
            recorded.append((artifact, artifact_id))
        refs.append(wire.ref(artifact_id, role))
    return refs, recorded


def _artifact_records(
    recorded: list[tuple[Artifact, str]],
    event_ids: list[str],
    occurred_at: str,
    scope: RunScope | None,
) -> list[wire.Record]:
    return [
        wire.artifact_recorded(event_id, occurred_at, scope, artifact_id, artifact)
        for event_id, (artifact, artifact_id) in zip(event_ids, recorded)
    ]


def artifact_record(
    artifact: Artifact, *, as_output: bool, scope: RunScope | None
) -> wire.Record | None:
    """The ``ArtifactRecorded`` event of ``artifact`` (fixing its id), or ``None`` when this
    process already recorded this input artifact in these contexts."""
    _, recorded = _edges([(artifact, "")], as_output=as_output, scope=scope)
    if not recorded:
        return None
    return _artifact_records(recorded, new_id_texts(1), wire.now(), scope)[0]


def metric_points(values: Mapping[str, Any], step: int | None) -> list[MetricPoint]:
    """``MetricPoint`` models of ``values`` at ``step``, all stamped now."""
    now = datetime.now(_UTC)
    step = None if step is None else int(step)
    return [
        make(MetricPoint, key=str(k), value=float(v), step=step, timestamp=now)
        for k, v in values.items()
    ]


class ExecutionHandle:
    """One execution being recorded; see the module doc for the contract."""

    __slots__ = (
        "_uuid",
        "execution_text",
        "_wire",
        "type",
        "name",
        "scope",
        "fingerprint",
        "trigger_id",
        "outputs",
        "_late_inputs",
        "_output_refs",
        "_params",
        "_custom",
        "_secrets",
        "done",
        "_token",
    )

    def __init__(
        self,
        execution_id: UUID | str,
        type: str,
        name: str | None,
        scope: RunScope | None,
        fingerprint: str | None,
        trigger_id: UUID | None = None,
    ) -> None:
        if isinstance(execution_id, UUID):
            self._uuid: UUID | None = execution_id
            self.execution_text = str(execution_id)
        else:
            self._uuid = None
            self.execution_text = execution_id
        self._wire: wire.Execution | None = None
        try:
            self._wire = wire.Execution(scope, self.execution_text, type, name, fingerprint)
        except Exception as exc:  # e.g. a name JSON cannot hold: its events fail, reported
            emitter.report("start_execution", exc)
        self.type = type
        self.name = name
        self.scope = scope
        self.fingerprint = fingerprint
        #: The trigger this execution runs for; every event of it says so (a worker knows
        #: a trigger is done by an execution carrying its id, whichever event lands first).
        self.trigger_id = trigger_id
        self.outputs: list[tuple[Artifact, str]] = []
        self._late_inputs: list[str] = []  # edge texts (``wire.ref``)
        self._output_refs: list[str] = []
        self._params: Properties = {}
        self._custom: Properties = {}
        self._secrets: list[str] = []  # values of redacted parameters: kept out of errors
        self.done = False

    @property
    def execution_id(self) -> UUID:
        """The execution's id (kept as text until asked for as a UUID)."""
        value = self._uuid
        if value is None:
            value = self._uuid = UUID(self.execution_text)
        return value

    # --- while running ----------------------------------------------------------------
    def add_input(self, artifact: Artifact, role: str = "") -> None:
        """Record ``artifact`` as an input (edge sent with the terminal event)."""
        try:
            refs, recorded = _edges([(artifact, role)], as_output=False, scope=self.scope)
            if recorded:
                emitter.emit_records(
                    _artifact_records(recorded, new_id_texts(1), wire.now(), self.scope)
                )
            with _HANDLE_LOCK:
                self._late_inputs.extend(refs)
        except Exception as exc:
            emitter.report("add_input", exc)

    def add_output(self, artifact: Artifact, role: str = "") -> None:
        """Record ``artifact`` as an output now (edge sent with the terminal event)."""
        try:
            ids = new_id_texts(2)  # the artifact's (if new), its event's
            refs, recorded = _edges([(artifact, role)], as_output=True, scope=self.scope, fresh=ids)
            emitter.emit_records(_artifact_records(recorded, ids[1:], wire.now(), self.scope))
            with _HANDLE_LOCK:
                self._output_refs.extend(refs)
                self.outputs.append((artifact, role))
        except Exception as exc:
            emitter.report("add_output", exc)

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        self.log_metrics({key: value}, step)

    def log_metrics(self, values: Mapping[str, Any], step: int | None = None) -> None:
        """Spool one ``MetricsLogged`` event with a point per key (NaN/inf allowed)."""
        try:
            if not values:
                return
            [event_id] = new_id_texts(1)
            emitter.emit_records(
                [
                    wire.metrics_logged(
                        event_id, wire.now(), self.scope, self.execution_text, values, step
                    )
                ]
            )
        except Exception as exc:
            emitter.report("log_metrics", exc)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Add parameters; they travel with the terminal event."""
        try:
            from metatrail.producer.capture import summarise

            found = redact.redact(typed({k: summarise(v) for k, v in params.items()}))
            with _HANDLE_LOCK:
                self._params.update(found.values)
                self._note_redacted(found)
        except Exception as exc:
            emitter.report("log_params", exc)

    def set_custom_properties(self, values: Mapping[str, Any]) -> None:
        """Add custom properties; they travel with the terminal event."""
        try:
            found = redact.redact(typed(dict(values)))
            with _HANDLE_LOCK:
                self._custom.update(found.values)
                self._note_redacted(found)
        except Exception as exc:
            emitter.report("set_custom_properties", exc)

    def _note_redacted(self, found: redact.Redacted) -> None:
        """Remember what ``found`` withheld (flag sent with the terminal event; secret
        values kept out of the error message). Holds ``_HANDLE_LOCK``."""
        if found.names:
            self._custom = redact.flagged(self._custom, found.names)
            self._secrets = [*self._secrets, *found.secrets]

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
            occurred_at = wire.now()
            pairs = _pairs(outputs)
            # new artifact ids for the outputs, their events' ids, the terminal event's id
            ids = new_id_texts(2 * len(pairs) + 1)
            refs, recorded = _edges(pairs, as_output=True, scope=self.scope, fresh=ids)
            self.outputs.extend(pairs)
            if custom_properties:
                found = redact.redact(typed(dict(custom_properties)))
                self._custom.update(found.values)
                self._note_redacted(found)
            event_ids = ids[len(pairs) :]
            records = _artifact_records(recorded, event_ids, occurred_at, self.scope)
            records.append(
                self._terminal(
                    ExecutionCompleted, event_ids[-1], occurred_at, self._output_refs + refs
                )
            )
            emitter.emit_records(records)
        except Exception as exc:
            emitter.report("complete", exc)

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
                message=redact.scrub(str(exc), self._secrets)[:MAX_MESSAGE_CHARS],
                traceback=redact.scrub(tb, self._secrets)[-MAX_TRACEBACK_CHARS:],
            )
            [event_id] = new_id_texts(1)
            emitter.emit_records(
                [
                    self._terminal(
                        ExecutionFailed, event_id, wire.now(), self._output_refs, error=error
                    )
                ]
            )
        except Exception as err:
            emitter.report("fail", err)

    def _terminal(
        self,
        cls: type[Any],
        event_id: str,
        occurred_at: str,
        outputs: list[str],
        error: ErrorInfo | None = None,
    ) -> wire.Record:
        return wire.execution_event(
            cls,
            event_id,
            occurred_at,
            self._serialized(),
            parameters=self._params,
            custom_properties=self._custom,
            code_version=None,
            environment=None,
            trigger_id=self.trigger_id,
            inputs=self._late_inputs,
            outputs=outputs,
            error=error,
        )

    def _serialized(self) -> wire.Execution:
        if self._wire is None:
            raise MetatrailError(f"execution {self.execution_text} cannot be recorded")
        return self._wire

    # --- as the current execution -----------------------------------------------------
    @contextmanager
    def activate(self) -> Iterator[ExecutionHandle]:
        """Make this the current execution for the ``with`` body (does not end it)."""
        token = CURRENT_EXECUTION.set(self)
        try:
            yield self
        finally:
            CURRENT_EXECUTION.reset(token)

    def __enter__(self) -> ExecutionHandle:
        self._token = CURRENT_EXECUTION.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        CURRENT_EXECUTION.reset(self._token)
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
    handle: ExecutionHandle | None = None
    try:
        refs, recorded = _edges(_pairs(inputs), as_output=False, scope=scope)
        ids = new_id_texts(len(recorded) + 2)  # execution, input events, ExecutionStarted
        handle = ExecutionHandle(
            execution_id if execution_id is not None else ids[0],
            type,
            name,
            scope,
            fingerprint,
            trigger_id,
        )
        if typed_parameters is None:
            from metatrail.producer.capture import summarise

            typed_parameters = typed({k: summarise(v) for k, v in (parameters or {}).items()})
        typed_parameters, custom, handle._secrets = redact.node(
            typed_parameters, typed(dict(custom_properties)) if custom_properties else {}
        )
        if redact.FLAG in custom:  # the terminal event repeats it
            handle._custom[redact.FLAG] = custom[redact.FLAG]
        occurred_at = wire.now()
        records = _artifact_records(recorded, ids[1:-1], occurred_at, scope) if recorded else []
        records.append(
            wire.execution_event(
                ExecutionStarted,
                ids[-1],
                occurred_at,
                handle._serialized(),
                parameters=typed_parameters,
                custom_properties=custom,
                code_version=code_version,
                environment=environment or current_environment(),
                trigger_id=trigger_id,
                inputs=refs,
                outputs=(),
            )
        )
        emitter.emit_records(records)
    except Exception as exc:
        emitter.report("start_execution", exc)
    if handle is None:
        handle = ExecutionHandle(
            execution_id if execution_id is not None else new_id_texts(1)[0],
            type,
            name,
            scope,
            fingerprint,
            trigger_id,
        )
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
    trigger_id: UUID | None = None,
) -> UUID | None:
    """Spool an ``ExecutionCached`` execution that reused ``cached_from``'s outputs (which
    are attributed to the current run's contexts too). Returns its id (``None`` on error).
    ``trigger_id``: the trigger the call ran for; a cache hit fulfils it like a run does."""
    scope = current_run() if scope is None else scope
    try:
        in_refs, in_recorded = _edges(_pairs(inputs), as_output=False, scope=scope)
        out_refs, out_recorded = _edges(_pairs(outputs), as_output=True, scope=scope)
        recorded = in_recorded + out_recorded
        ids = new_id_texts(len(recorded) + 2)
        parameters, custom, _ = redact.node(
            parameters or {}, typed(dict(custom_properties)) if custom_properties else {}
        )
        occurred_at = wire.now()
        records = _artifact_records(recorded, ids[1:-1], occurred_at, scope)
        records.append(
            wire.execution_event(
                ExecutionCached,
                ids[-1],
                occurred_at,
                wire.Execution(scope, ids[0], type, name, fingerprint),
                parameters=parameters,
                custom_properties=custom,
                code_version=code_version,
                environment=current_environment(),
                trigger_id=trigger_id,
                inputs=in_refs,
                outputs=out_refs,
                cached_from=cached_from,
            )
        )
        emitter.emit_records(records)
        return UUID(ids[0])
    except Exception as exc:
        emitter.report("record_cached", exc)
        return None
