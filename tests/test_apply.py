"""Apply on every backend: idempotency, the state lattice, placeholders, dead letters,
and ``metatrail ingest``."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from metatrail.consumer.apply import RawRecord, apply_events, apply_records
from metatrail.consumer.cli import main
from metatrail.consumer.store.models import ArtifactRow, DeadLetterRow, EdgeRow, ExecutionPropertyRow, ExecutionRow, MetricRow
from metatrail.schemas import (
    ArtifactRecorded,
    ArtifactRef,
    ContextUpserted,
    ExecutionCompleted,
    ExecutionRecorded,
    ExecutionStarted,
    MetricPoint,
    MetricsLogged,
    context_id,
    dump_event,
    new_id,
    typed,
)
from tests.fixtures.dump import canonical_dump

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def _pipeline() -> list[object]:
    run = context_id("Run", "nightly")
    data, model, execution = new_id(), new_id(), new_id()
    return [
        ContextUpserted(context_id=run, type="Run", name="nightly", occurred_at=T0),
        ArtifactRecorded(artifact_id=data, type="Dataset", uri="/d.csv", digest="sha256:1", occurred_at=T0,
                         properties=typed({"rows": 10}), context_ids=[run]),
        ExecutionStarted(execution_id=execution, type="Trainer", context_ids=[run], occurred_at=T0,
                         parameters=typed({"lr": 0.1, "epochs": 3}),
                         inputs=[ArtifactRef(artifact_id=data, role="examples")]),
        ArtifactRecorded(artifact_id=model, type="Model", uri="/m", occurred_at=T0 + timedelta(seconds=5)),
        ExecutionCompleted(execution_id=execution, context_ids=[run], occurred_at=T0 + timedelta(seconds=5),
                           outputs=[ArtifactRef(artifact_id=model, role="model")]),
        MetricsLogged(execution_id=execution, occurred_at=T0 + timedelta(seconds=5),
                      points=[MetricPoint(key="auc", value=0.9, step=3, timestamp=T0)]),
    ]


def _count(engine: Engine, column: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(column)).scalar_one())  # type: ignore[arg-type]


def test_redelivery_changes_nothing(engine: Engine) -> None:
    events = _pipeline()
    first = apply_events(engine, events)  # type: ignore[arg-type]
    once = canonical_dump(engine)
    again = apply_events(engine, events + events)  # type: ignore[arg-type]
    assert (first.applied, first.duplicates) == (6, 0)
    assert (again.applied, again.duplicates) == (0, 12)
    assert canonical_dump(engine) == once
    assert _count(engine, EdgeRow.__table__) == 2 and _count(engine, MetricRow.__table__) == 1


def test_late_start_never_undoes_completion(engine: Engine) -> None:
    events = _pipeline()
    started, completed = events[2], events[4]
    apply_events(engine, [completed])  # type: ignore[list-item]
    apply_events(engine, [started])  # type: ignore[list-item]
    with engine.connect() as conn:
        row = conn.execute(select(ExecutionRow.state, ExecutionRow.type, ExecutionRow.started_at)).one()
    assert row.state == "COMPLETE" and row.type == "Trainer" and row.started_at == T0


def test_an_imported_execution_state_takes_its_place_in_the_lattice(engine: Engine) -> None:
    """``execution.recorded`` (importers) says NEW, CANCELED, ... with the source's times; a
    terminal state wins over a later-arriving NEW or RUNNING, and a later terminal report
    wins over an earlier one whatever the arrival order."""
    xid = new_id()
    start, end = T0 - timedelta(hours=1), T0 - timedelta(minutes=30)
    new = ExecutionRecorded(execution_id=xid, type="Spark", state="NEW", occurred_at=T0)
    canceled = ExecutionRecorded(execution_id=xid, state="CANCELED", occurred_at=T0 + timedelta(seconds=2),
                                 started_at=start, ended_at=end)
    running = ExecutionRecorded(execution_id=xid, state="RUNNING", occurred_at=T0 + timedelta(seconds=9))
    failed = ExecutionRecorded(execution_id=xid, state="FAILED", occurred_at=T0 + timedelta(seconds=5),
                               error={"type": "Abort", "message": "killed"})
    apply_events(engine, [new])
    with engine.connect() as conn:
        assert conn.execute(select(ExecutionRow.state)).scalar_one() == "NEW"
    apply_events(engine, [failed, running, canceled])
    with engine.connect() as conn:
        row = conn.execute(
            select(ExecutionRow.state, ExecutionRow.started_at, ExecutionRow.ended_at, ExecutionRow.error_type)
        ).one()
    assert (row.state, row.error_type) == ("FAILED", "Abort")  # the later of the two terminal reports
    assert row.started_at == start and row.ended_at == T0 + timedelta(seconds=5)


def test_reference_before_record_makes_a_placeholder_that_is_filled_later(engine: Engine) -> None:
    events = _pipeline()
    apply_events(engine, [events[4]])  # type: ignore[list-item]  completed, naming the model only by id
    with engine.connect() as conn:
        placeholder = conn.execute(select(ArtifactRow.is_placeholder, ArtifactRow.state, ArtifactRow.uri)).one()
    assert tuple(placeholder) == (True, "UNKNOWN", None)
    report = apply_events(engine, [events[3]])  # type: ignore[list-item]
    with engine.connect() as conn:
        filled = conn.execute(select(ArtifactRow.is_placeholder, ArtifactRow.state, ArtifactRow.uri)).one()
    assert tuple(filled) == (False, "LIVE", "/m") and len(report.live_artifact_ids) == 1


def test_properties_merge_last_writer_wins_whatever_the_order(engine: Engine) -> None:
    xid = new_id()
    old = ExecutionStarted(execution_id=xid, type="T", parameters=typed({"lr": 0.1}), occurred_at=T0)
    new = ExecutionCompleted(execution_id=xid, parameters=typed({"lr": 0.2}), occurred_at=T0 + timedelta(seconds=1))
    apply_events(engine, [new])
    apply_events(engine, [old])
    with engine.connect() as conn:
        assert conn.execute(select(ExecutionPropertyRow.double_value)).scalar_one() == 0.2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"schema_version": "1", "kind": "execution.started", "execution_id": 5}', "invalid execution.started"),
        (b'{"schema_version": "9", "kind": "execution.started"}', "unknown schema_version"),
        (b'{"schema_version": "1", "kind": "model.blessed"}', "unknown kind"),
    ],
)
def test_bad_records_are_dead_lettered_and_the_rest_applied(engine: Engine, payload: bytes, reason: str) -> None:
    good = [RawRecord(dump_event(e), f"test:{i}") for i, e in enumerate(_pipeline())]  # type: ignore[arg-type]
    report = apply_records(engine, [*good[:3], RawRecord(payload, "test:bad"), *good[3:]])
    assert (report.applied, report.dead_lettered) == (6, 1)
    with engine.connect() as conn:
        letter = conn.execute(select(DeadLetterRow.source_key, DeadLetterRow.reason, DeadLetterRow.payload)).one()
    assert letter.source_key == "test:bad" and reason in letter.reason and bytes(letter.payload) == payload


def test_a_poison_message_redelivered_is_stored_once(engine: Engine) -> None:
    for _ in range(3):
        apply_records(engine, [RawRecord(b"\xff\xfe", "kafka:t:0:42", topic="t", partition=0, offset=42)])
    assert _count(engine, DeadLetterRow.__table__) == 1


def test_an_event_the_store_rejects_is_isolated_and_dead_lettered(engine: Engine) -> None:
    """A valid event whose value a backend refuses (PostgreSQL's btree index takes no
    8 KB key: a 2,048-character uri of 4-byte characters) is split out of its batch and
    dead-lettered with the store's reason; the events batched with it are applied."""
    import random

    rnd = random.Random(7)
    uri = "".join(chr(rnd.randint(0x1F300, 0x1FAFF)) for _ in range(2048))
    events = _pipeline()
    poison = ArtifactRecorded(artifact_id=new_id(), type="Blob", uri=uri)
    records = [RawRecord(dump_event(e), f"t:{i}") for i, e in enumerate([*events[:3], poison, *events[3:]])]  # type: ignore[arg-type]
    report = apply_records(engine, records)
    if engine.dialect.name == "postgresql":
        assert (report.applied, report.dead_lettered) == (6, 1)
        assert "store rejected" in report.dead_letters[0].reason and "index row" in report.dead_letters[0].reason
        assert _count(engine, DeadLetterRow.__table__) == 1
    else:
        assert (report.applied, report.dead_lettered) == (7, 0)
    assert _count(engine, EdgeRow.__table__) == 2


def test_text_no_store_can_hold_is_dead_lettered_on_every_backend(engine: Engine) -> None:
    """NUL (PostgreSQL text takes none) and lone surrogates (not UTF-8) are refused by the
    contract itself, so the same event is dead-lettered on every backend alike."""
    events = _pipeline()
    nul = ContextUpserted(context_id=new_id(), type="Run", name="nul\x00name")
    records = [RawRecord(dump_event(e), f"t:{i}") for i, e in enumerate([*events[:3], nul, *events[3:]])]  # type: ignore[arg-type]
    report = apply_records(engine, records)
    assert (report.applied, report.dead_lettered) == (6, 1)
    assert "field 'name': text contains a NUL character" in report.dead_letters[0].reason
    assert _count(engine, EdgeRow.__table__) == 2


def _write_jsonl(path: Path, events: list[object], bad_lines: list[str]) -> None:
    lines = [dump_event(e).decode() for e in events]  # type: ignore[arg-type]
    lines[2:2] = bad_lines
    path.write_text("\n".join(lines) + "\n\n")


def test_ingest_twice_is_ingest_once(store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    wrong_type = json.dumps({"schema_version": "1", "kind": "context.upserted", "context_id": "x"})
    _write_jsonl(path, _pipeline(), ["this is not json", wrong_type, '{"schema_version":"1","kind":"nope"}'])
    assert main(["ingest", str(path), "--url", store_url, "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    from metatrail.consumer.store.engine import open_engine

    engine = open_engine(store_url)
    once = canonical_dump(engine)
    assert main(["ingest", str(path), "--url", store_url, "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert canonical_dump(engine) == once
    engine.dispose()
    assert (first["applied"], first["duplicates"], first["dead_lettered"]) == (6, 0, 3)
    assert (second["applied"], second["duplicates"], second["dead_lettered"]) == (0, 6, 3)
    assert {"not valid JSON", "invalid context.upserted", "unknown kind"} <= {
        r for d in first["dead_letters"] for r in ("not valid JSON", "invalid context.upserted", "unknown kind") if r in d["reason"]
    }


def test_ingest_of_a_missing_file_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "no-such-file.jsonl"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-file.jsonl" in err
