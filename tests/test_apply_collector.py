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


def test_pauses_that_overlap_for_too_long_run_one_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server under steady load may never see every pause end at once: past
    ``MAX_PAUSE_S`` the pause that ends runs a collection, so cycles cannot pile up."""
    import metatrail.consumer.apply.collector as collector

    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    was = gc.isenabled()
    gc.enable()
    gc.callbacks.append(seen)
    try:
        with collector_paused():
            with collector_paused():
                pass
            assert collections == []  # within the limit: nothing runs
            monkeypatch.setattr(collector, "MAX_PAUSE_S", 0.0)
            with collector_paused():
                pass
            assert collections == [2]
            assert not gc.isenabled()  # still paused: the outer pause has not ended
        assert gc.isenabled()
    finally:
        gc.callbacks.remove(seen)
        gc.enable() if was else gc.disable()


def test_a_batch_is_freed_before_the_collector_resumes(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The objects a batch made are gone when the pause ends (freed by reference counting),
    not left for the collection that resumption would run to traverse."""
    import metatrail.consumer.apply.collector as collector

    def batch(start: int) -> list[RawRecord]:
        return [RawRecord(dump_event(_event(f"n{i}")), f"k:{i}") for i in range(start, start + 300)]

    apply_records(engine, batch(0))  # warm: statement caches and the like are made once
    young_at_resumption: list[int] = []

    class Collector:
        """``gc`` as the pause sees it, noting how many new objects live as it resumes."""

        def __getattr__(self, name: str) -> object:
            return getattr(gc, name)

        def enable(self) -> None:
            young_at_resumption.append(len(gc.get_objects(generation=0)))
            gc.enable()

    monkeypatch.setattr(collector, "gc", Collector())
    thresholds, was = gc.get_threshold(), gc.isenabled()
    records = batch(300)
    gc.collect()  # the young generation is empty
    gc.set_threshold(10**9)  # and only the batch adds to it
    gc.enable()
    try:
        apply_records(engine, records)
    finally:
        gc.set_threshold(*thresholds)
        gc.enable() if was else gc.disable()
    assert len(young_at_resumption) == 1 and young_at_resumption[0] < 1_000, young_at_resumption
