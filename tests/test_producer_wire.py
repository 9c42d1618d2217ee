"""The hot path's own event writer (``metatrail.producer.wire``) against the contract's serializer.

For random events of every kind the writer handles, the bytes must be exactly what
pydantic writes for the same event model (``metatrail.producer.build`` + the model's serializer, i.e.
``metatrail.schemas.dump_event``), with the same event id and partition key; and the writer must know
every field of each model, in order, so a field added to ``metatrail.schemas.events`` fails here
instead of silently missing from the wire.
"""

from __future__ import annotations

import math
import os
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic_core import to_json

from metatrail.producer import wire
from metatrail.producer.artifacts import Artifact
from metatrail.producer.build import build, make, record
from metatrail.producer.context import RunScope
from metatrail.schemas import parse_event
from metatrail.schemas.events import (
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
from metatrail.schemas.ids import new_id, new_id_texts
from metatrail.schemas.values import INT_MAX, INT_MIN, PropertyValue

EXAMPLES = settings(
    max_examples=int(os.environ.get("METATRAIL_TEST_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EXECUTION_KINDS = (ExecutionStarted, ExecutionCompleted, ExecutionFailed, ExecutionCached)

texts = st.text(max_size=40)  # any code point but surrogates, control characters included
ids = st.uuids()
# Any instant a datetime can hold, in ns since the epoch (microseconds 0 included often).
instants = st.one_of(
    st.integers(min_value=0, max_value=253_402_300_799_999_999_999),
    st.integers(min_value=0, max_value=253_402_300_799).map(lambda s: s * 1_000_000_000),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10,
)
plain_values = st.one_of(
    st.booleans(),
    st.integers(min_value=INT_MIN - 10, max_value=INT_MAX + 10),
    st.floats(),
    texts,
    json_values,
)
properties = st.dictionaries(texts, plain_values.map(PropertyValue.of), max_size=4)
# What ``@track`` builds without validation (``make``), NaN and infinities included.
made_properties = st.dictionaries(
    texts,
    st.one_of(
        st.integers(min_value=INT_MIN, max_value=INT_MAX).map(lambda v: ("int", v)),
        st.floats().map(lambda v: ("float", v)),
        texts.map(lambda v: ("string", v)),
        st.booleans().map(lambda v: ("bool", v)),
    ).map(lambda tv: make(PropertyValue, type=tv[0], value=tv[1])),
    max_size=4,
)
scopes = st.one_of(
    st.none(),
    st.builds(
        RunScope,
        run_id=ids,
        context_id=ids,
        type=texts,
        name=texts,
        context_ids=st.lists(ids, max_size=3).map(tuple),
    ),
)
code_versions = st.one_of(
    st.none(),
    st.builds(
        CodeVersion,
        source_hash=st.none() | texts,
        git_commit=st.none() | texts,
        git_dirty=st.none() | st.booleans(),
        module=st.none() | texts,
        qualname=st.none() | texts,
    ),
)
environments = st.one_of(
    st.none(),
    st.builds(
        Environment,
        python=st.none() | texts,
        platform=st.none() | texts,
        host=st.none() | texts,
        packages=st.dictionaries(texts, texts, max_size=3),
    ),
)
edges = st.lists(st.tuples(ids, texts), max_size=3)


def _at(ns: int) -> datetime:
    return EPOCH + timedelta(microseconds=ns // 1000)


def _run_id(scope: RunScope | None) -> uuid.UUID | None:
    return scope.run_id if scope is not None else None


def _same(written: wire.Record, model: Any) -> None:
    assert written == record(model)


def test_the_writer_knows_every_field_of_each_model_in_order() -> None:
    for cls, fields in wire.FIELDS.items():
        assert tuple(cls.model_fields) == fields, cls.__name__
    assert set(wire.FIELDS) == {*EXECUTION_KINDS, ArtifactRecorded, MetricsLogged}


@EXAMPLES
@given(
    cls=st.sampled_from(EXECUTION_KINDS),
    event_id=ids,
    ns=instants,
    scope=scopes,
    execution_id=ids,
    type=texts,
    name=st.none() | texts,
    parameters=properties | made_properties,
    custom=properties,
    code_version=code_versions,
    environment=environments,
    fingerprint=st.none() | texts,
    trigger_id=st.none() | ids,
    inputs=edges,
    outputs=edges,
    error=st.builds(ErrorInfo, type=texts, message=texts, traceback=st.none() | texts),
    cached_from=st.none() | ids,
)
def test_execution_events_are_written_as_pydantic_writes_them(
    cls: Any,
    event_id: uuid.UUID,
    ns: int,
    scope: RunScope | None,
    execution_id: uuid.UUID,
    type: str,
    name: str | None,
    parameters: dict[str, PropertyValue],
    custom: dict[str, PropertyValue],
    code_version: CodeVersion | None,
    environment: Environment | None,
    fingerprint: str | None,
    trigger_id: uuid.UUID | None,
    inputs: list[tuple[uuid.UUID, str]],
    outputs: list[tuple[uuid.UUID, str]],
    error: ErrorInfo,
    cached_from: uuid.UUID | None,
) -> None:
    extra: dict[str, Any] = {}
    if cls is ExecutionFailed:
        extra["error"] = error
    if cls is ExecutionCached:
        extra["cached_from"] = cached_from
    written = wire.execution_event(
        cls,
        str(event_id),
        wire.timestamp(ns),
        wire.Execution(scope, str(execution_id), type, name, fingerprint),
        parameters=parameters,
        custom_properties=custom,
        code_version=code_version,
        environment=environment,
        trigger_id=trigger_id,
        inputs=[wire.ref(str(a), role) for a, role in inputs],
        outputs=[wire.ref(str(a), role) for a, role in outputs],
        **extra,
    )
    model = build(
        cls,
        _at(ns),
        event_id=event_id,
        run_id=_run_id(scope),
        execution_id=execution_id,
        type=type,
        name=name,
        context_ids=list(scope.context_ids) if scope is not None else [],
        parameters=parameters,
        custom_properties=custom,
        code_version=code_version,
        environment=environment,
        fingerprint=fingerprint,
        trigger_id=trigger_id,
        inputs=[make(ArtifactRef, artifact_id=a, role=r, edge_type=None, recorded_at=None) for a, r in inputs],
        outputs=[make(ArtifactRef, artifact_id=a, role=r, edge_type=None, recorded_at=None) for a, r in outputs],
        **extra,
    )
    _same(written, model)


@EXAMPLES
@given(
    event_id=ids,
    ns=instants,
    scope=scopes,
    artifact_id=ids,
    uri=texts,
    type=texts,
    name=st.none() | texts,
    version=st.none() | texts,
    digest=st.none() | texts,
    state=st.sampled_from(["LIVE", "PENDING", "DELETED"]),
    props=st.dictionaries(texts, plain_values, max_size=3),
    custom=st.dictionaries(texts, plain_values, max_size=3),
)
def test_artifact_events_are_written_as_pydantic_writes_them(
    event_id: uuid.UUID,
    ns: int,
    scope: RunScope | None,
    artifact_id: uuid.UUID,
    uri: str,
    type: str,
    name: str | None,
    version: str | None,
    digest: str | None,
    state: str,
    props: dict[str, Any],
    custom: dict[str, Any],
) -> None:
    artifact = Artifact(
        uri,
        type=type,
        name=name,
        version=version,
        properties=props,
        custom_properties=custom,
        digest=digest,
        state=state,
        id=artifact_id,
    )
    written = wire.artifact_recorded(
        str(event_id), wire.timestamp(ns), scope, artifact.id_text(as_output=True), artifact
    )
    model = build(
        ArtifactRecorded,
        _at(ns),
        event_id=event_id,
        run_id=_run_id(scope),
        artifact_id=artifact_id,
        type=artifact.type,
        uri=artifact.uri,
        digest=artifact.digest,
        state=artifact.state,
        name=artifact.name,
        version=artifact.version,
        properties=artifact.properties,
        custom_properties=artifact.custom_properties,
        context_ids=list(scope.context_ids) if scope is not None else [],
    )
    _same(written, model)


@EXAMPLES
@given(
    event_id=ids,
    ns=instants,
    scope=scopes,
    execution_id=st.none() | ids,
    points=st.dictionaries(texts, st.floats() | st.integers(-(2**53), 2**53), min_size=1),
    step=st.none() | st.integers(min_value=INT_MIN, max_value=INT_MAX),
)
def test_metric_events_are_written_as_pydantic_writes_them(
    event_id: uuid.UUID,
    ns: int,
    scope: RunScope | None,
    execution_id: uuid.UUID | None,
    points: dict[str, float],
    step: int | None,
) -> None:
    if execution_id is None and scope is None:
        execution_id = uuid.uuid4()  # a metric belongs to an execution or a run
    written = wire.metrics_logged(
        str(event_id),
        wire.timestamp(ns),
        scope,
        None if execution_id is None else str(execution_id),
        points,
        step,
    )
    at = _at(ns)
    model = build(
        MetricsLogged,
        at,
        event_id=event_id,
        run_id=_run_id(scope),
        execution_id=execution_id,
        context_id=None if execution_id is not None or scope is None else scope.context_id,
        points=[
            make(MetricPoint, key=k, value=float(v), step=step, timestamp=at)
            for k, v in points.items()
        ],
    )
    _same(written, model)


@settings(max_examples=2000, deadline=None)
@given(st.floats())
def test_floats_are_spelled_as_pydantic_core_spells_them(value: float) -> None:
    assert wire.number(value) == to_json(value, inf_nan_mode="strings").decode()


@pytest.mark.parametrize(
    "value", [0.0, -0.0, 1e-5, 1.5e-5, 1e-4, 1e15, 1e16, 1e22, 5e-324, math.pi, math.inf, -math.inf]
)
def test_float_spelling_at_the_notation_boundaries(value: float) -> None:
    assert wire.number(value) == to_json(value, inf_nan_mode="strings").decode()


def test_a_string_json_cannot_encode_fails_as_it_does_in_pydantic() -> None:
    with pytest.raises(UnicodeEncodeError):
        wire.artifact_recorded(str(new_id()), wire.now(), None, str(new_id()), Artifact("\ud800"))


def test_written_events_validate_and_the_ids_are_time_ordered() -> None:
    scope = RunScope(new_id(), new_id(), "Run", "r", (new_id(),))
    event_ids = new_id_texts(3)
    assert event_ids == sorted(event_ids) and len(set(event_ids)) == 3
    assert all(uuid.UUID(t).version == 7 and str(uuid.UUID(t)) == t for t in event_ids)
    started = wire.execution_event(
        ExecutionStarted,
        event_ids[0],
        wire.now(),
        wire.Execution(scope, event_ids[1], "train", "train", None),
        parameters={"epochs": PropertyValue.of(3), "lr": PropertyValue.of(1e-5)},
        custom_properties={},
        code_version=None,
        environment=None,
        trigger_id=None,
        inputs=[wire.ref(str(new_id()), "data")],
        outputs=(),
    )
    event = parse_event(started[2])
    assert str(event.event_id) == event_ids[0] and started[1] == str(scope.run_id)
    assert event.parameters["lr"].value == 1e-5
    assert (datetime.now(timezone.utc) - event.occurred_at).total_seconds() < 5
