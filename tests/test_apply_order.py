"""Design rule 3, held by hypothesis: any permutation of a pipeline's events, with any
duplicates, in any batch split, yields the same graph — on every backend."""

from __future__ import annotations

import os
import random
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from metatrail.consumer.apply import apply_events
from metatrail.schemas import (
    ArtifactRecorded,
    ArtifactRef,
    ArtifactStateChanged,
    ContextMembersAdded,
    ContextUpserted,
    ExecutionCached,
    ExecutionRecorded,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionStarted,
    MetricPoint,
    MetricsLogged,
    Origin,
    StepRegistered,
    StepInput,
    TypeRegistered,
    typed,
)
from metatrail.schemas.events import ErrorInfo
from tests.fixtures.backends import reset_store
from tests.fixtures.dump import canonical_dump

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
PROP_VALUES = st.one_of(
    st.integers(-5, 5),
    st.floats(-2, 2, allow_nan=False).map(lambda f: round(f, 3)),
    st.sampled_from(["a", "b", "it's", "x" * 300]),
    st.booleans(),
    st.sampled_from([[1, 2], {"k": "v"}, None]),
    st.just(float("nan")),
)
#: Names that differ only by case, accents or trailing spaces are different names on every
#: backend (MariaDB's default collation once made them one key: their batches never applied).
COLLIDING = ["p", "P", "p ", "q", "split", "Split", "resume", "résumé", "lr", "LR", "lr "]
PROPS = st.dictionaries(st.sampled_from(COLLIDING), PROP_VALUES, max_size=3)


@st.composite
def pipeline_events(draw: Any) -> list[Any]:
    """A random pipeline's event log: contexts, artifacts, executions with edges,
    conflicting property updates, state changes, metrics, types and steps."""
    when = lambda: T0 + timedelta(seconds=draw(st.integers(0, 6)))  # noqa: E731 (ties on purpose)
    counter = iter(range(1, 10**6))
    salt = draw(st.integers(0, 2**32))  # event ids are unique, their order random
    eid = lambda: uuid.uuid5(uuid.NAMESPACE_OID, f"{salt}-{next(counter)}")  # noqa: E731
    contexts = [uuid.UUID(int=i + 1) for i in range(draw(st.integers(1, 3)))]
    artifacts = [uuid.UUID(int=100 + i) for i in range(draw(st.integers(1, 6)))]
    executions = [uuid.UUID(int=1000 + i) for i in range(draw(st.integers(1, 4)))]
    events: list[Any] = []
    for i, cid in enumerate(contexts):
        for _ in range(draw(st.integers(0, 2))):
            events.append(
                ContextUpserted(
                    event_id=eid(), occurred_at=when(), context_id=cid,
                    type=draw(st.sampled_from(["Run", "run", "Pipeline"])),
                    name=f"c{i}{draw(st.sampled_from(['a', 'A', 'a ', 'á']))}",
                    parent_ids=draw(st.lists(st.sampled_from(contexts), max_size=2)),
                    properties=typed(draw(PROPS)),
                    origin=draw(st.sampled_from([None, Origin(mlmd_id=i + 1), Origin(mlmd_id=i + 2)])),
                )
            )
    for aid in artifacts:
        for _ in range(draw(st.integers(0, 2))):
            events.append(
                ArtifactRecorded(
                    event_id=eid(), occurred_at=when(), artifact_id=aid,
                    type=draw(st.sampled_from(["Dataset", "Model", "model"])),
                    uri=f"/data/{aid.int}{draw(st.sampled_from(['', ' ', 'É']))}",
                    digest=draw(st.sampled_from([None, "d1", "d2"])),
                    state=draw(st.sampled_from(["LIVE", "PENDING"])),
                    properties=typed(draw(PROPS)), custom_properties=typed(draw(PROPS)),
                    context_ids=draw(st.lists(st.sampled_from(contexts), max_size=2)),
                    origin=draw(st.one_of(st.none(), st.builds(
                        Origin, mlmd_id=st.sampled_from([None, 1, 2]), external_id=st.sampled_from([None, "x1", "x2"]),
                        created_at=st.one_of(st.none(), st.just(when()))))),
                )
            )
        if draw(st.booleans()):
            events.append(
                ArtifactStateChanged(
                    event_id=eid(), occurred_at=when(), artifact_id=aid,
                    state=draw(st.sampled_from(["DELETED", "ABANDONED", "LIVE"])), reason="r",
                )
            )
    for xid in executions:
        common = lambda: dict(  # noqa: E731
            event_id=eid(), occurred_at=when(), execution_id=xid,
            context_ids=draw(st.lists(st.sampled_from(contexts), max_size=2)),
            parameters=typed(draw(PROPS)),
        )
        refs = lambda: [  # noqa: E731
            ArtifactRef(artifact_id=a, role=draw(st.sampled_from(["", "examples", "model", "Model", "model "])))
            for a in draw(st.lists(st.sampled_from(artifacts), max_size=3))
        ]
        events.append(ExecutionStarted(**common(), type="Trainer", fingerprint="f", inputs=refs()))
        end = draw(st.sampled_from(["completed", "failed", "cached", "none", "two"]))
        if end in ("completed", "two"):
            events.append(ExecutionCompleted(**common(), outputs=refs()))
        if end in ("failed", "two"):
            events.append(ExecutionFailed(**common(), error=ErrorInfo(type="ValueError", message="boom")))
        if end == "cached":
            events.append(ExecutionCached(**common(), outputs=refs(), cached_from=executions[0]))
        if draw(st.booleans()):  # as an importer reports it, any state, with its own times
            typed_refs = [
                ArtifactRef(artifact_id=a, role=draw(st.sampled_from(["", "model:0"])),
                            edge_type=draw(st.sampled_from([None, "OUTPUT", "DECLARED_OUTPUT", "PENDING_OUTPUT"])),
                            recorded_at=draw(st.one_of(st.none(), st.just(when()))))
                for a in draw(st.lists(st.sampled_from(artifacts), max_size=3))
            ]
            events.append(
                ExecutionRecorded(
                    **common(), outputs=typed_refs,
                    origin=draw(st.one_of(st.none(), st.just(Origin(mlmd_id=5, created_at=when())))),
                    state=draw(st.sampled_from(["NEW", "UNKNOWN", "RUNNING", "CANCELED", "COMPLETE"])),
                    started_at=draw(st.one_of(st.none(), st.just(when()))),
                    ended_at=draw(st.one_of(st.none(), st.just(when()))),
                )
            )
        if draw(st.booleans()):
            events.append(
                MetricsLogged(
                    event_id=eid(), occurred_at=when(), execution_id=xid,
                    points=[
                        MetricPoint(key=draw(st.sampled_from(["auc", "AUC", "loss", "loss "])), value=draw(st.floats(0, 1)),
                                    step=draw(st.one_of(st.none(), st.integers(0, 3))), timestamp=when())
                        for _ in range(draw(st.integers(1, 3)))
                    ],
                )
            )
    for _ in range(draw(st.integers(0, 2))):  # memberships said apart (an importer's)
        events.append(
            ContextMembersAdded(
                event_id=eid(), occurred_at=when(), context_id=draw(st.sampled_from(contexts)),
                artifact_ids=draw(st.lists(st.sampled_from(artifacts), max_size=3)),
                execution_ids=draw(st.lists(st.sampled_from(executions), max_size=2)),
            )
        )
    for _ in range(draw(st.integers(0, 2))):
        events.append(
            TypeRegistered(event_id=eid(), occurred_at=when(), type_kind="artifact",
                           name=draw(st.sampled_from(["Dataset", "dataset"])),
                           properties={draw(st.sampled_from(COLLIDING)): draw(st.sampled_from(["int", "string"]))},
                           description="d",
                           base_type=draw(st.sampled_from([None, "mlmd.Dataset", "mlmd.Model"])))
        )
    if draw(st.booleans()):
        for _ in range(2):
            events.append(
                StepRegistered(event_id=eid(), occurred_at=when(), step_id=uuid.UUID(int=7), name="train",
                               module="m", qualname="train", inputs={"x": StepInput(type="Dataset")},
                               policy=draw(st.sampled_from(["each", "latest"])))
            )
    return events


def _apply_in_batches(engine: Engine, events: list[Any], rng: random.Random) -> None:
    i = 0
    while i < len(events):
        size = rng.randint(1, 7)
        apply_events(engine, events[i : i + size])
        i += size


@settings(
    max_examples=int(os.environ.get("METATRAIL_TEST_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(events=pipeline_events(), seed=st.integers(0, 2**32))
def test_any_order_with_duplicates_gives_the_same_graph(engine: Engine, events: list[Any], seed: int) -> None:
    rng = random.Random(seed)
    reset_store(engine)
    apply_events(engine, events)
    expected = canonical_dump(engine)

    reset_store(engine)
    shuffled = events + rng.sample(events, k=rng.randint(0, len(events)))
    rng.shuffle(shuffled)
    _apply_in_batches(engine, shuffled, rng)
    assert canonical_dump(engine) == expected
