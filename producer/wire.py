"""Wire bytes of the events a tracked call writes, without building pydantic models.

A tracked call spools three events (``execution.started``, ``artifact.recorded`` for its
output, ``execution.completed``). Building unvalidated models and running pydantic's
serializer on them costs several µs per event, most of it re-serializing what never
changes: the producer, the environment, the code version, the run's ids, the type and
name. Here, what is constant is serialized once, BY PYDANTIC (``model``), and cached; per
event only ids, the timestamp, properties and edges are formatted, following pydantic-core's
rules: compact JSON, fields in declaration order, strings escaped like serde_json (which is
``json``'s escaping without ``ensure_ascii``), floats through pydantic-core's own formatter
unless ``repr`` spells them the same, aware UTC datetimes as ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.

The output is byte for byte what ``metatrail.schemas.dump_event`` writes for the same event:
``tests/test_producer_wire.py`` checks it on random events (hypothesis) and checks that
every field of each model is written, in order, so the contract cannot drift silently.
Strict mode (tests) still validates every spooled event with ``metatrail.schemas.parse_event``.

Every function returns a ``Record`` (event id, partition key, payload) — what the spool
stores. The partition key follows ``metatrail.producer.build.partition_key``: the root run id, else
the execution / artifact / context id.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from pydantic_core import to_json

from metatrail.producer.context import RunScope
from metatrail.schemas.events import (
    ArtifactRecorded,
    ErrorInfo,
    ExecutionCached,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    MetricsLogged,
    ProducerInfo,
)
from metatrail.schemas.values import PropertyValue
from metatrail.schemas.version import SCHEMA_VERSION

Record = tuple[str, str, bytes]

#: The JSON text of a string (quotes included), escaped as serde_json escapes it.
text = encode_basestring

#: The fields each writer below emits, in order: checked against the models by the tests.
FIELDS: dict[type[BaseModel], tuple[str, ...]] = {}
_ENVELOPE = ("event_id", "schema_version", "occurred_at", "producer", "run_id")
_EXECUTION = (
    *_ENVELOPE,
    "execution_id",
    "type",
    "name",
    "context_ids",
    "parameters",
    "custom_properties",
    "code_version",
    "environment",
    "fingerprint",
    "trigger_id",
    "inputs",
    "outputs",
    "origin",
    "kind",
)
FIELDS[ExecutionStarted] = _EXECUTION
FIELDS[ExecutionCompleted] = _EXECUTION
FIELDS[ExecutionFailed] = (*_EXECUTION, "error")
FIELDS[ExecutionCached] = (*_EXECUTION, "cached_from")
FIELDS[ArtifactRecorded] = (
    *_ENVELOPE,
    "kind",
    "artifact_id",
    "type",
    "uri",
    "digest",
    "state",
    "name",
    "version",
    "properties",
    "custom_properties",
    "context_ids",
    "origin",
)
FIELDS[MetricsLogged] = (*_ENVELOPE, "kind", "execution_id", "context_id", "points")

_SCHEMA_VERSION = text(SCHEMA_VERSION)
_TAILS = {
    cls: ',"kind":' + text(cls.model_fields["kind"].default)
    for cls in (ExecutionStarted, ExecutionCompleted, ExecutionFailed, ExecutionCached)
}


# --- values ------------------------------------------------------------------------------


def optional_text(value: str | None) -> str:
    return "null" if value is None else text(value)


def uuid_text(value: UUID | None) -> str:
    return "null" if value is None else f'"{value}"'


def number(value: float) -> str:
    """A float as pydantic-core writes it (NaN and infinities as strings, as the models'
    ``ser_json_inf_nan="strings"`` asks). ``repr`` is the same shortest round-trip text
    except in exponent notation (``1e-05`` vs ``0.00001``, ``1e+16`` vs ``1e16``)."""
    spelled = float.__repr__(value)
    if "e" in spelled or "n" in spelled:  # exponent, inf, nan
        return to_json(value, inf_nan_mode="strings").decode()
    return spelled


_SECOND: tuple[int, str] = (-1, "")


def timestamp(ns: int) -> str:
    """Unix time ``ns`` as pydantic writes an aware UTC datetime (without the quotes);
    microseconds are floored, as ``datetime.now`` does."""
    global _SECOND
    seconds, micros = divmod(ns // 1000, 1_000_000)
    cached = _SECOND
    if cached[0] != seconds:
        cached = _SECOND = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    # (str(10**6 + micros)[1:] is "%06d" % micros, cheaper)
    return f"{cached[1]}.{str(1_000_000 + micros)[1:]}Z" if micros else f"{cached[1]}Z"


def now() -> str:
    """The current time, as ``timestamp`` writes it."""
    return timestamp(time.time_ns())


def ref(artifact_id: str, role: str) -> str:
    """An ``ArtifactRef`` (an edge's far end)."""
    return f'{{"artifact_id":"{artifact_id}","role":{text(role)},"edge_type":null,"recorded_at":null}}'


def _property(value: PropertyValue) -> str:
    kind, v = value.type, value.value
    cls = v.__class__
    if kind == "int" and cls is int:
        return f'{{"type":"int","value":{int.__repr__(v)}}}'
    if kind == "string" and cls is str:
        return f'{{"type":"string","value":{text(v)}}}'
    if kind == "float" and cls is float:
        return f'{{"type":"float","value":{number(v)}}}'
    if kind == "bool" and cls is bool:
        return '{"type":"bool","value":true}' if v else '{"type":"bool","value":false}'
    return PropertyValue.__pydantic_serializer__.to_json(value).decode()


def properties(values: Mapping[str, PropertyValue]) -> str:
    """A ``Properties`` mapping (name -> typed value)."""
    if not values:
        return "{}"
    return "{" + ",".join([f"{text(k)}:{_property(v)}" for k, v in values.items()]) + "}"


_MODELS: dict[int, tuple[BaseModel, str]] = {}


def model(value: BaseModel | None) -> str:
    """A constant nested model (code version, environment, producer), serialized by pydantic
    once per object and cached by identity: the models are frozen, and the objects the SDK
    passes (``capture.environment()``, a function's ``code_version``) live for the process."""
    if value is None:
        return "null"
    hit = _MODELS.get(id(value))
    if hit is not None and hit[0] is value:
        return hit[1]
    serialized = type(value).__pydantic_serializer__.to_json(value).decode()
    if len(_MODELS) > 4096:
        _MODELS.clear()
    _MODELS[id(value)] = (value, serialized)
    return serialized


# --- per run scope -----------------------------------------------------------------------


class _ScopeText:
    """What every event of a run scope repeats, serialized once."""

    __slots__ = ("key", "head", "context_ids", "context_id")

    def __init__(self, scope: RunScope | None) -> None:
        producer = model(ProducerInfo.current())
        if scope is None:
            self.key = ""
            run_id = "null"
            self.context_ids = "[]"
            self.context_id = "null"
        else:
            self.key = str(scope.run_id)
            run_id = f'"{self.key}"'
            self.context_ids = "[" + ",".join(f'"{c}"' for c in scope.context_ids) + "]"
            self.context_id = uuid_text(scope.context_id)
        #: from the end of occurred_at to the end of run_id.
        self.head = f'","producer":{producer},"run_id":{run_id}'


_SCOPES: dict[int, tuple[RunScope | None, _ScopeText]] = {}


def _scope(scope: RunScope | None) -> _ScopeText:
    hit = _SCOPES.get(id(scope))
    if hit is not None and hit[0] is scope:
        return hit[1]
    made = _ScopeText(scope)
    if len(_SCOPES) > 10_000:
        _SCOPES.clear()
    _SCOPES[id(scope)] = (scope, made)
    return made


#: Bumped in a forked child: an ``Execution`` made before the fork re-reads its head.
_generation = 0


def reset_after_fork() -> None:
    """In a forked child: forget texts holding the parent's pid. Registered as this
    module's at-fork hook."""
    global _generation
    _generation += 1
    _SCOPES.clear()
    _MODELS.clear()
    _ABOUT.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_after_fork)


_OCCURRED_AT = f'","schema_version":{_SCHEMA_VERSION},"occurred_at":"'


def _head(event_id: str, occurred_at: str, scope_head: str) -> str:
    """The envelope, up to the end of ``run_id`` (``scope_head`` is ``_ScopeText.head``)."""
    return f'{{"event_id":"{event_id}{_OCCURRED_AT}{occurred_at}{scope_head}'


# --- events ------------------------------------------------------------------------------

class Execution:
    """What every event of one execution repeats, serialized once (a handle keeps one):
    its partition key, the envelope's producer and run id, and its id, type, name, context
    ids and fingerprint."""

    __slots__ = ("scope", "generation", "key", "head", "about", "fingerprint")

    def __init__(
        self,
        scope: RunScope | None,
        execution_id: str,
        type: str | None,
        name: str | None,
        fingerprint: str | None,
    ) -> None:
        scoped = _scope(scope)
        self.scope = scope
        self.generation = _generation
        self.key = scoped.key or execution_id
        self.head = scoped.head
        self.about = f',"execution_id":"{execution_id}{_about(scoped, type, name)}'
        self.fingerprint = "null" if fingerprint is None else text(fingerprint)


_ABOUT: dict[tuple[int, str | None, str | None], tuple[_ScopeText, str]] = {}


def _about(scoped: _ScopeText, type: str | None, name: str | None) -> str:
    """From the end of the execution id to the ``"parameters":`` key (cached)."""
    key = (id(scoped), type, name)
    hit = _ABOUT.get(key)
    if hit is not None and hit[0] is scoped:
        return hit[1]
    about = (
        f'","type":{optional_text(type)},"name":{optional_text(name)},'
        f'"context_ids":{scoped.context_ids},"parameters":'
    )
    if len(_ABOUT) > 10_000:
        _ABOUT.clear()
    _ABOUT[key] = (scoped, about)
    return about


def execution_event(
    cls: type[BaseModel],
    event_id: str,
    occurred_at: str,
    execution: Execution,
    *,
    parameters: Mapping[str, PropertyValue],
    custom_properties: Mapping[str, PropertyValue],
    code_version: BaseModel | None,
    environment: BaseModel | None,
    trigger_id: UUID | None,
    inputs: Iterable[str],
    outputs: Iterable[str],
    error: ErrorInfo | None = None,
    cached_from: UUID | None = None,
) -> Record:
    """An ``execution.*`` event of model ``cls``; ``inputs``/``outputs`` are ``ref`` texts,
    ``occurred_at`` a ``timestamp`` text, ``error`` only for ``ExecutionFailed`` and
    ``cached_from`` only for ``ExecutionCached``."""
    tail = _TAILS[cls]
    if cls is ExecutionFailed:
        tail += ',"error":' + ErrorInfo.__pydantic_serializer__.to_json(error).decode()
    elif cls is ExecutionCached:
        tail += ',"cached_from":' + uuid_text(cached_from)
    head = execution.head if execution.generation == _generation else _scope(execution.scope).head
    payload = (
        f"{_head(event_id, occurred_at, head)}{execution.about}"
        f"{properties(parameters) if parameters else '{}'},"
        f'"custom_properties":{properties(custom_properties) if custom_properties else "{}"},'
        f'"code_version":{model(code_version)},"environment":{model(environment)},'
        f'"fingerprint":{execution.fingerprint},"trigger_id":{uuid_text(trigger_id)},'
        f'"inputs":[{",".join(inputs)}],"outputs":[{",".join(outputs)}],"origin":null{tail}}}'
    )
    return event_id, execution.key, payload.encode()


def artifact_recorded(
    event_id: str,
    occurred_at: str,
    scope: RunScope | None,
    artifact_id: str,
    artifact: Any,
) -> Record:
    """The ``artifact.recorded`` event of ``artifact`` (a ``metatrail.producer.Artifact`` whose id
    is ``artifact_id``), attributed to the scope's contexts."""
    scoped = _scope(scope)
    a = artifact
    props, custom = a.properties, a.custom_properties
    payload = (
        f'{_head(event_id, occurred_at, scoped.head)},'
        f'"kind":"artifact.recorded","artifact_id":"{artifact_id}",'
        f'"type":{text(a.type)},"uri":{text(a.uri)},'
        f'"digest":{optional_text(a.digest)},"state":{text(a.state)},'
        f'"name":{optional_text(a.name)},"version":{optional_text(a.version)},'
        f'"properties":{properties(props) if props else "{}"},'
        f'"custom_properties":{properties(custom) if custom else "{}"},'
        f'"context_ids":{scoped.context_ids},"origin":null}}'
    )
    return event_id, scoped.key or artifact_id, payload.encode()


def metrics_logged(
    event_id: str,
    occurred_at: str,
    scope: RunScope | None,
    execution_id: str | None,
    points: Mapping[str, Any],
    step: int | None,
) -> Record:
    """One ``metrics.logged`` event: a point per key of ``points`` (values made floats),
    all at ``occurred_at``. Owned by the execution ``execution_id``, or (when ``None``) by
    the scope's innermost run context."""
    scoped = _scope(scope)
    tail = f',"step":{int.__repr__(int(step))},' if step is not None else ',"step":null,'
    tail += f'"timestamp":"{occurred_at}"}}'
    listed = ",".join(
        [f'{{"key":{text(str(k))},"value":{number(float(v))}{tail}' for k, v in points.items()]
    )
    if execution_id is not None:
        owner = f'"execution_id":"{execution_id}","context_id":null'
        key = scoped.key or execution_id
    else:
        owner = f'"execution_id":null,"context_id":{scoped.context_id}'
        key = scoped.key or str(scope.context_id if scope is not None else event_id)
    payload = (
        f'{_head(event_id, occurred_at, scoped.head)},"kind":"metrics.logged",{owner},'
        f'"points":[{listed}]}}'
    )
    return event_id, key, payload.encode()

