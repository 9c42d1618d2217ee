"""The cyclic collector is paused while a batch is applied, and left as it was found."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

import metatrail.consumer.apply.applier as applier
from metatrail.consumer.apply import RawRecord, apply_events, apply_records
from metatrail.consumer.apply.collector import collector_paused
from metatrail.consumer.apply.plan import Plan, build_plan
from metatrail.schemas import ContextUpserted, Event, context_id, dump_event


@pytest.fixture
def collector_seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether the collector was enabled each time apply planned a batch."""
    seen: list[bool] = []

    def planning(events: list[Event]) -> Plan:
        seen.append(gc.isenabled())
        return build_plan(events)

    monkeypatch.setattr(applier, "build_plan", planning)
    was = gc.isenabled()
    yield seen
    gc.enable() if was else gc.disable()


def _event(name: str) -> ContextUpserted:
    return ContextUpserted(context_id=context_id("Run", name), type="Run", name=name)


def test_apply_pauses_the_collector_and_resumes_it(engine: Engine, collector_seen: list[bool]) -> None:
    gc.enable()
    apply_records(engine, [RawRecord(dump_event(_event("a")), "k:1")])
    apply_events(engine, [_event("b")])
    assert collector_seen == [False, False]
    assert gc.isenabled()


def test_a_collector_the_program_disabled_stays_disabled(engine: Engine, collector_seen: list[bool]) -> None:
    gc.disable()
    apply_events(engine, [_event("c")])
    assert collector_seen == [False]
    assert not gc.isenabled()


def test_pauses_nest_and_the_outermost_resumes() -> None:
    was = gc.isenabled()
    gc.enable()
    try:
        with collector_paused():
            with collector_paused():
                assert not gc.isenabled()
            assert not gc.isenabled()
        assert gc.isenabled()
        with pytest.raises(RuntimeError), collector_paused():
            raise RuntimeError("a failed batch")
        assert gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()
