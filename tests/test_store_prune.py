"""``metatrail db prune`` on every backend: exactly the old rows that are safe to forget go;
unpublished outbox rows, open claims and user data stay; re-applying an event whose id was
forgotten changes no row of the graph."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select, update

from metatrail.consumer.apply import apply_events
from metatrail.consumer.cli import main
from metatrail.consumer.store.models import AppliedEventRow, StepRow, TriggerClaimRow, TriggerOutboxRow
from metatrail.consumer.store.prune import PRUNED_TABLES, prune
from metatrail.schemas import (
    ArtifactRecorded,
    ArtifactRef,
    ArtifactStateChanged,
    ContextUpserted,
    ExecutionCompleted,
    ExecutionStarted,
    MetricPoint,
    MetricsLogged,
    StepInput,
    StepRegistered,
    typed,
)
from metatrail.schemas.ids import context_id, new_id, step_id
from tests.fixtures.dump import canonical_dump

NOW = datetime.now(timezone.utc)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)
T0 = datetime(2026, 9, 1, tzinfo=timezone.utc)
MONTH = timedelta(days=30)

RUN = context_id("Run", "nightly")
DATA, MODEL, EXECUTION = new_id(), new_id(), new_id()
T_RAN = new_id()  # the trigger of EXECUTION


def _old_events() -> list[Any]:
    """Events applied long ago: a run, a step, its inputs and outputs, metrics."""
    step = step_id(None, "train")
    return [
        ContextUpserted(context_id=RUN, type="Run", name="nightly", occurred_at=T0),
        StepRegistered(step_id=step, name="train", module="m", qualname="train", occurred_at=T0,
                       inputs={"model": StepInput(type="Model")}),
        ArtifactRecorded(artifact_id=DATA, type="Dataset", uri="/d.csv", occurred_at=T0 + timedelta(seconds=1),
                         properties=typed({"rows": 10}), context_ids=[RUN]),
        ExecutionStarted(execution_id=EXECUTION, type="Trainer", context_ids=[RUN], occurred_at=T0,
                         trigger_id=T_RAN, parameters=typed({"lr": 0.1}),
                         inputs=[ArtifactRef(artifact_id=DATA, role="examples")]),
        ArtifactRecorded(artifact_id=MODEL, type="Model", uri="/m", occurred_at=T0 + timedelta(seconds=5),
                         properties=typed({"auc": 0.8})),
        ExecutionCompleted(execution_id=EXECUTION, occurred_at=T0 + timedelta(seconds=5), trigger_id=T_RAN,
                           outputs=[ArtifactRef(artifact_id=MODEL, role="model")]),
        MetricsLogged(execution_id=EXECUTION, occurred_at=T0 + timedelta(seconds=5),
                      points=[MetricPoint(key="auc", value=0.8, step=1, timestamp=T0),
                              MetricPoint(key="auc", value=0.9, step=2, timestamp=T0)]),
    ]


def _new_events() -> list[Any]:
    """Later events overriding what the old ones set (so re-applying the old ones must lose)."""
    return [
        ArtifactRecorded(artifact_id=MODEL, type="Model", uri="/m2", occurred_at=T0 + timedelta(days=1),
                         properties=typed({"auc": 0.95})),
        ArtifactStateChanged(artifact_id=DATA, state="DELETED", reason="gdpr", occurred_at=T0 + timedelta(days=2)),
    ]


def _age_applied(engine: Engine, events: list[Any], when: datetime) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(AppliedEventRow)
            .where(AppliedEventRow.event_id.in_([str(e.event_id) for e in events]))
            .values(applied_at=when)
        )


def _outbox(trigger: str, step: str, created: datetime, sent: datetime | None) -> dict[str, Any]:
    return {"trigger_id": trigger, "step_id": step, "step_name": "s", "inputs": {}, "created_at": created,
            "sent_at": sent}


def _claim(trigger: str, attempt: int, claimed: datetime, finished: datetime | None) -> dict[str, Any]:
    return {"trigger_id": trigger, "attempt": attempt, "worker": "w", "claimed_at": claimed,
            "finished_at": finished, "outcome": None if finished is None else "ran"}


def _orchestration(engine: Engine) -> dict[str, str]:
    """Outbox rows and claims of every kind; returns name -> trigger id."""
    t = {name: str(new_id()) for name in ("never", "unsent", "claimed", "recent", "lone", "open")}
    t["ran"] = str(T_RAN)
    s1, s2 = str(new_id()), str(new_id())
    with engine.begin() as conn:
        conn.execute(insert(TriggerOutboxRow), [
            _outbox(t["ran"], s1, OLD, OLD),  # has an execution: kept
            _outbox(t["never"], s1, OLD, OLD),  # never ran anywhere, not its step's newest: goes
            _outbox(t["unsent"], s1, OLD, None),  # unpublished: kept
            _outbox(t["claimed"], s1, OLD, OLD),  # a worker claimed it: kept
            _outbox(t["open"], s1, OLD, OLD),  # claimed, claim still open: kept
            _outbox(t["recent"], s1, RECENT, RECENT),  # too young (and s1's newest): kept
            _outbox(t["lone"], s2, OLD, OLD),  # s2's newest (all_new reads it): kept
        ])
        conn.execute(insert(TriggerClaimRow), [
            _claim(t["ran"], 0, OLD, OLD),  # finished long ago, has an execution: goes
            _claim(t["ran"], 1, RECENT, RECENT),  # too young: kept
            _claim(t["claimed"], 0, OLD, OLD),  # no execution: kept (with its outbox row)
            _claim(t["open"], 0, OLD, None),  # open: kept
        ])
    return t


def _keys(engine: Engine) -> dict[str, set[Any]]:
    with engine.connect() as conn:
        return {
            "mt_applied_events": set(conn.execute(select(AppliedEventRow.event_id)).scalars()),
            "mt_trigger_outbox": set(conn.execute(select(TriggerOutboxRow.trigger_id)).scalars()),
            "mt_trigger_claims": {tuple(r) for r in conn.execute(select(TriggerClaimRow.trigger_id, TriggerClaimRow.attempt))},
        }


def _store(engine: Engine) -> tuple[list[Any], list[Any], dict[str, str]]:
    """Old and new applied events and orchestration rows; ``t["applied"]`` is the trigger
    the old events requested (the step on a new Model), still unpublished."""
    old, new = _old_events(), _new_events()
    apply_events(engine, old)
    _age_applied(engine, old, OLD)
    apply_events(engine, new)
    (requested,) = _keys(engine)["mt_trigger_outbox"]
    return old, new, {**_orchestration(engine), "applied": requested}


@pytest.mark.parametrize("batch_size", [1000, 2], ids=["one-batch", "many-batches"])
def test_prune_deletes_exactly_the_old_safe_rows(engine: Engine, batch_size: int) -> None:
    old, new, t = _store(engine)
    graph = {k: v for k, v in canonical_dump(engine).items() if k != "mt_applied_events"}

    report = prune(engine, MONTH, batch_size=batch_size)

    assert report.deleted == {"mt_applied_events": len(old), "mt_trigger_claims": 1, "mt_trigger_outbox": 1}
    keys = _keys(engine)
    assert keys["mt_applied_events"] == {str(e.event_id) for e in new}
    assert keys["mt_trigger_outbox"] == {t[n] for n in ("ran", "unsent", "claimed", "open", "recent", "lone", "applied")}
    assert keys["mt_trigger_claims"] == {(t["ran"], 1), (t["claimed"], 0), (t["open"], 0)}
    assert {k: v for k, v in canonical_dump(engine).items() if k != "mt_applied_events"} == graph
    assert prune(engine, MONTH).deleted == dict.fromkeys(PRUNED_TABLES, 0)  # idempotent


def test_dry_run_counts_and_deletes_nothing(engine: Engine) -> None:
    _store(engine)
    before = _keys(engine)
    report = prune(engine, MONTH, dry_run=True)
    assert report.dry_run
    assert report.deleted == {"mt_applied_events": len(_old_events()), "mt_trigger_claims": 1, "mt_trigger_outbox": 1}
    assert _keys(engine) == before


def test_reapplying_an_event_whose_id_was_pruned_changes_no_row(engine: Engine) -> None:
    old, _new, _t = _store(engine)
    before_prune = canonical_dump(engine)
    outbox_before = _keys(engine)["mt_trigger_outbox"]
    prune(engine, MONTH)
    pruned = canonical_dump(engine)
    assert len(pruned["mt_applied_events"]) == len(before_prune["mt_applied_events"]) - len(old)

    report = apply_events(engine, old)  # the ids are forgotten: every event is applied again

    assert (report.applied, report.duplicates, report.triggers_requested) == (len(old), 0, 0)
    after = canonical_dump(engine)
    assert {k: v for k, v in after.items() if k != "mt_applied_events"} == {
        k: v for k, v in pruned.items() if k != "mt_applied_events"
    }
    assert after == before_prune  # only the applied ids came back
    assert len(after["mt_metrics"]) == 2
    assert _keys(engine)["mt_trigger_outbox"] == outbox_before - {_t["never"]}


def test_a_redelivered_metrics_event_after_pruning_adds_no_sample(engine: Engine) -> None:
    metrics = MetricsLogged(execution_id=EXECUTION, occurred_at=T0,
                            points=[MetricPoint(key="loss", value=0.5, step=1, timestamp=T0)])
    apply_events(engine, [metrics])
    _age_applied(engine, [metrics], OLD)
    prune(engine, MONTH)
    once = {k: v for k, v in canonical_dump(engine).items() if k != "mt_applied_events"}
    apply_events(engine, [metrics, metrics])
    assert {k: v for k, v in canonical_dump(engine).items() if k != "mt_applied_events"} == once


def test_prune_refuses_a_cutoff_under_a_day(engine: Engine) -> None:
    with pytest.raises(ValueError, match="1 day"):
        prune(engine, timedelta(hours=23))


@pytest.mark.parametrize("duration", ["soon", "30", "-1d", "12h"], ids=["word", "no-unit", "negative", "under-a-day"])
def test_cli_bad_duration_is_a_one_line_usage_error(
    sqlite_url: str, duration: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["db", "prune", "--url", sqlite_url, "--older-than", duration]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("metatrail: error:") and "\n" not in err and "Traceback" not in err


def test_cli_dry_run_reports_counts_per_table(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from metatrail.consumer.store.engine import open_engine

    engine = open_engine(store_url)
    try:
        _store(engine)
        before = _keys(engine)
        assert main(["db", "prune", "--url", store_url, "--older-than", "30d", "--dry-run", "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["dry_run"] is True
        assert out["deleted"] == {"mt_applied_events": len(_old_events()), "mt_trigger_claims": 1, "mt_trigger_outbox": 1}
        assert _keys(engine) == before
        assert main(["db", "prune", "--url", store_url, "--older-than", "4w"]) == 0
        assert "mt_applied_events: deleted 7 row(s)" in capsys.readouterr().out
        with engine.connect() as conn:
            assert conn.execute(select(StepRow.id)).first() is not None  # user data stays
    finally:
        engine.dispose()
