"""Trigger evaluation and the relay, at the store level, on every backend."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select

from metatrail.consumer.apply import apply_events
from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.models import StepPendingRow, TriggerOutboxRow
from metatrail.consumer.triggers.candidates import PIPELINE_CONTEXT_TYPE
from metatrail.consumer.triggers.relay import fetch_unsent, mark_sent, relay_once
from metatrail.schemas.events import (
    ArtifactRecorded,
    ContextUpserted,
    ExecutionCompleted,
    StepInput,
    StepRegistered,
    TriggerRequested,
)
from metatrail.schemas.ids import context_id, new_id, step_id, trigger_id
from metatrail.schemas.values import typed

PIPELINE = "p"
PIPE_CTX = context_id(PIPELINE_CONTEXT_TYPE, PIPELINE)
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def register(name: str, inputs: dict[str, StepInput], policy: str = "each", pipeline: str | None = PIPELINE) -> StepRegistered:
    return StepRegistered(
        step_id=step_id(pipeline, name), name=name, pipeline=pipeline, module="m", qualname=name,
        inputs=inputs, policy=policy,  # type: ignore[arg-type]
    )


def dataset(type_name: str = "Examples", n: int = 0, *, split: str = "train", in_pipeline: bool = True) -> ArtifactRecorded:
    return ArtifactRecorded(
        artifact_id=new_id(), type=type_name, uri=f"s3://bucket/{type_name}/{n}",
        occurred_at=T0 + timedelta(seconds=n), properties=typed({"split": split}),
        context_ids=[PIPE_CTX] if in_pipeline else [],
    )


def pipeline_context() -> ContextUpserted:
    return ContextUpserted(context_id=PIPE_CTX, type=PIPELINE_CONTEXT_TYPE, name=PIPELINE)


def outbox(engine: Engine) -> list[TriggerOutboxRow]:
    with session_scope(engine, write=False) as s:
        return list(s.scalars(select(TriggerOutboxRow).order_by(TriggerOutboxRow.created_at)))


def pending(engine: Engine) -> list[StepPendingRow]:
    with session_scope(engine, write=False) as s:
        return list(s.scalars(select(StepPendingRow)))


class ListPublisher:
    def __init__(self) -> None:
        self.sent: list[TriggerRequested] = []

    def publish(self, requests: Sequence[TriggerRequested]) -> None:
        self.sent.extend(requests)


def test_each_writes_one_trigger_per_new_artifact_and_is_idempotent(engine: Engine) -> None:
    train = register("train", {"examples": StepInput(type="Examples")})
    d1 = dataset(n=1)
    events = [pipeline_context(), train, d1]
    report = apply_events(engine, events)
    assert report.triggers_requested == 1
    rows = outbox(engine)
    assert [r.trigger_id for r in rows] == [str(trigger_id(train.step_id, {"examples": d1.artifact_id}))]
    assert rows[0].inputs == {"examples": str(d1.artifact_id)} and rows[0].sent_at is None
    # The same events again (redelivery, a replay, a second consumer): nothing new.
    assert apply_events(engine, events).triggers_requested == 0
    assert len(outbox(engine)) == 1
    d2 = dataset(n=2)
    apply_events(engine, [d2])
    assert len(outbox(engine)) == 2


def test_filters_pipeline_scope_and_types_select_the_inputs(engine: Engine) -> None:
    train = register("train", {"examples": StepInput(type="Examples", filter="properties.split = 'train'")})
    apply_events(engine, [pipeline_context(), train])
    apply_events(engine, [dataset(n=1, split="eval"), dataset("Model", n=2), dataset(n=3, in_pipeline=False)])
    assert outbox(engine) == []
    good = dataset(n=4, split="train")
    apply_events(engine, [good])
    assert [r.inputs for r in outbox(engine)] == [{"examples": str(good.artifact_id)}]


def test_a_bad_filter_does_not_stop_the_batch(engine: Engine) -> None:
    bad = register("bad", {"examples": StepInput(type="Examples", filter="properties.split = = 'x'")})
    good = register("good", {"examples": StepInput(type="Examples")})
    report = apply_events(engine, [pipeline_context(), bad, good, dataset(n=1)])
    assert report.applied == 4 and report.triggers_requested == 1
    assert [r.step_name for r in outbox(engine)] == ["good"]


def test_each_with_two_slots_waits_for_both_then_pairs_with_the_newest(engine: Engine) -> None:
    ev = register("evaluate", {"model": StepInput(type="Model"), "examples": StepInput(type="Examples")})
    apply_events(engine, [pipeline_context(), ev])
    m1 = dataset("Model", n=1)
    apply_events(engine, [m1])
    assert outbox(engine) == []
    e1, e2 = dataset(n=2), dataset(n=3)
    apply_events(engine, [e1])
    apply_events(engine, [e2])
    assert [r.inputs for r in outbox(engine)] == [
        {"model": str(m1.artifact_id), "examples": str(e1.artifact_id)},
        {"model": str(m1.artifact_id), "examples": str(e2.artifact_id)},
    ]


def test_latest_coalesces_a_burst_into_one_pending_set(engine: Engine) -> None:
    train = register("train", {"examples": StepInput(type="Examples")}, policy="latest")
    apply_events(engine, [pipeline_context(), train])
    burst = [dataset(n=i) for i in range(20)]
    for d in burst:  # one batch each: the worst case for coalescing
        apply_events(engine, [d])
    rows = pending(engine)
    assert len(rows) == 1 and rows[0].inputs == {"examples": str(burst[-1].artifact_id)}
    assert outbox(engine) == []
    pub = ListPublisher()
    assert relay_once(engine, pub) == 1
    assert [dict(r.inputs) for r in pub.sent] == [{"examples": burst[-1].artifact_id}]
    # While that run is in flight, newer inputs wait in the pending row...
    later = [dataset(n=100 + i) for i in range(5)]
    for d in later:
        apply_events(engine, [d])
    assert relay_once(engine, pub) == 0
    assert len(pending(engine)) == 1
    # ...and run once when the in-flight trigger's execution finished.
    done = ExecutionCompleted(execution_id=new_id(), trigger_id=pub.sent[0].trigger_id, type="train")
    apply_events(engine, [done])
    assert relay_once(engine, pub) == 1
    assert dict(pub.sent[-1].inputs) == {"examples": later[-1].artifact_id}
    assert pending(engine) == []


def test_all_new_waits_for_every_input(engine: Engine) -> None:
    step = register("join", {"a": StepInput(type="A"), "b": StepInput(type="B")}, policy="all_new")
    apply_events(engine, [pipeline_context(), step])
    a1 = dataset("A", n=1)
    apply_events(engine, [a1])
    assert outbox(engine) == []
    b1 = dataset("B", n=2)
    apply_events(engine, [b1])
    assert len(outbox(engine)) == 1
    a2 = dataset("A", n=3)
    apply_events(engine, [a2])
    a3 = dataset("A", n=4)
    apply_events(engine, [a3])
    assert len(outbox(engine)) == 1  # B has nothing newer yet
    b2 = dataset("B", n=5)
    apply_events(engine, [b2])
    rows = outbox(engine)
    assert len(rows) == 2 and rows[-1].inputs == {"a": str(a3.artifact_id), "b": str(b2.artifact_id)}


def test_relay_crash_between_publish_and_mark_republishes_the_same_request(engine: Engine) -> None:
    train = register("train", {"examples": StepInput(type="Examples")})
    apply_events(engine, [pipeline_context(), train, dataset(n=1)])
    first = fetch_unsent(engine)
    pub = ListPublisher()
    pub.publish(first)  # published, then the relay dies before marking
    assert relay_once(engine, pub) == 1  # the next relay publishes it again...
    assert [r.event_id for r in pub.sent] == [first[0].event_id] * 2  # ...as the same fact
    assert relay_once(engine, pub) == 0
    assert mark_sent(engine, [str(first[0].trigger_id)]) == 0
    with session_scope(engine, write=False) as s:
        assert s.scalar(select(func.count()).select_from(TriggerOutboxRow).where(TriggerOutboxRow.sent_at.is_(None))) == 0


@pytest.mark.parametrize("policy", ["each", "latest", "all_new"])
def test_steps_without_a_pipeline_see_every_artifact(sqlite_url: str, policy: str) -> None:
    from metatrail.consumer.store.engine import open_engine

    engine = open_engine(sqlite_url)
    try:
        step = register("s", {"x": StepInput(type="X")}, policy=policy, pipeline=None)
        apply_events(engine, [step, dataset("X", n=1, in_pipeline=False)])
        relay_once(engine, ListPublisher())
        assert len(outbox(engine)) == 1
    finally:
        engine.dispose()


def test_trigger_ids_are_deterministic() -> None:
    s = uuid.uuid4()
    a, b = uuid.uuid4(), uuid.uuid4()
    assert trigger_id(s, {"x": a, "y": b}) == trigger_id(s, {"y": b, "x": a})
    assert trigger_id(s, {"x": a}) != trigger_id(s, {"x": b})
