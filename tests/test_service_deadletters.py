"""Bad input never stops the line: dead letters in the DLQ topic and table, and replay."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer
from sqlalchemy import select

from metatrail.consumer.apply import RawRecord, apply_records
from metatrail.consumer.cli import main
from metatrail.consumer.service.replay import dead_letter_counts, list_dead_letters, replay_dead_letters
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import ArtifactRow, DeadLetterRow
from metatrail.schemas.events import ArtifactRecorded, ContextUpserted
from metatrail.schemas.ids import new_id
from metatrail.schemas.parse import dump_event
from metatrail.schemas.settings import load_settings
from metatrail.schemas.values import typed
from tests.fixtures.broker import kafka_test_settings
from tests.fixtures.service import (
    applied_count,
    committed_total,
    dead_letter_count,
    publish,
    running_loop,
    wait_for,
)


def _context_event() -> bytes:
    cid = new_id()
    return dump_event(ContextUpserted(context_id=cid, type="Run", name=f"run-{cid}", run_id=cid))


def _big_artifact(size: int) -> tuple[str, bytes]:
    aid = new_id()
    event = ArtifactRecorded(
        artifact_id=aid, type="Blob", uri="s3://b/x", custom_properties=typed({"blob": "x" * size})
    )
    return str(aid), dump_event(event)


@pytest.mark.kafka
def test_malformed_messages_are_dead_lettered_and_the_partition_moves_on(
    kafka_bootstrap: str, topic_prefix: str, store_url: str
) -> None:
    # moving 5 MB through the DLQ topic and the table takes a few seconds on a busy machine
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, store_url, kafka_max_poll_interval_ms=15_000)
    wrong_shape = json.dumps({"schema_version": "1", "kind": "artifact.recorded", "uri": 42}).encode()
    unknown_version = json.dumps({"schema_version": "99", "kind": "artifact.recorded"}).encode()
    _, huge = _big_artifact(5 * 1024 * 1024)
    bad = {
        b"\xff\xfegarbage\x00": "not valid JSON",
        wrong_shape: "invalid artifact.recorded event",
        unknown_version: "unknown schema_version",
        huge: "larger than the limit",
    }
    key = b"one-partition"
    messages = [(key, _context_event())] + [(key, b) for b in bad] + [(key, _context_event())]
    engine = open_engine(store_url)
    try:
        with running_loop(settings, engine):
            publish(kafka_bootstrap, settings.events_topic, messages)
            wait_for(lambda: committed_total(settings, kafka_bootstrap) == len(messages), 90,
                     what="all messages consumed and committed")
        assert applied_count(engine) == 2  # the events before and after the bad ones
        assert dead_letter_count(engine) == len(bad)
        with session_scope(engine, write=False) as s:
            rows = {r.offset: r for r in s.scalars(select(DeadLetterRow))}
        assert sorted(rows) == [1, 2, 3, 4]
        for offset, (payload, reason) in zip(sorted(rows), bad.items()):
            row = rows[offset]
            assert reason in row.reason
            assert row.topic == settings.events_topic and row.partition is not None
            assert row.source_key == f"kafka:{settings.events_topic}:{row.partition}:{offset}"
            assert row.payload_bytes == len(payload)
    finally:
        engine.dispose()

    dlq = KafkaConsumer(
        settings.dlq_topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
        consumer_timeout_ms=10_000, max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    try:
        letters = []
        for message in dlq:
            letters.append(message)
            if len(letters) == len(bad):
                break
    finally:
        dlq.close()
    assert [m.value for m in sorted(letters, key=lambda m: int(dict(m.headers)["metatrail.source_offset"]))] == list(bad)
    for message in letters:
        headers = dict(message.headers)
        assert message.key == key
        assert headers["metatrail.source_topic"] == settings.events_topic.encode()
        assert bad[message.value].encode() in headers["metatrail.reason"]


def test_replay_applies_fixed_dead_letters_once(sqlite_url: str) -> None:
    engine = open_engine(sqlite_url)
    settings = load_settings(store_url=sqlite_url)
    try:
        big_id, big = _big_artifact(2 * 1024 * 1024)  # too large at the default 1 MiB limit
        good = _context_event()
        records = [
            RawRecord(b"not json", "file:x:1"),
            RawRecord(big, "file:x:2"),
            RawRecord(good, "file:x:3"),
        ]
        report = apply_records(engine, records, max_event_bytes=settings.kafka_max_message_bytes)
        assert (report.applied, report.dead_lettered) == (1, 2)
        # the good one also sits in the table (as if dead-lettered by an older consumer)
        with session_scope(engine) as s:
            s.add(DeadLetterRow(source_key="file:x:0", reason="old bug", payload=good, payload_bytes=len(good),
                                created_at=datetime.now(UTC)))
        assert dead_letter_counts(engine) == (3, 3)

        first = {o.source_key: o.result for o in replay_dead_letters(engine, settings)}
        assert first["file:x:1"].startswith("still invalid: not valid JSON")
        assert first["file:x:2"].startswith("still invalid") and "larger than the limit" in first["file:x:2"]
        assert first["file:x:0"] == "duplicate"

        fixed = load_settings(store_url=sqlite_url, kafka_max_message_bytes=4 * 1024 * 1024)
        second = {o.source_key: o.result for o in replay_dead_letters(engine, fixed)}
        assert second == {"file:x:1": first["file:x:1"], "file:x:2": "applied"}
        with session_scope(engine, write=False) as s:
            assert s.get(ArtifactRow, big_id) is not None
        applied_before = applied_count(engine)
        third = replay_dead_letters(engine, fixed)
        assert [o.source_key for o in third] == ["file:x:1"]
        ids = [dl.id for dl in list_dead_letters(engine) if dl.source_key == "file:x:2"]
        assert [o.result for o in replay_dead_letters(engine, fixed, ids)] == ["applied"]
        assert applied_count(engine) == applied_before
        assert dead_letter_counts(engine) == (3, 1)
    finally:
        engine.dispose()


def test_dlq_cli(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    engine = open_engine(sqlite_url)
    try:
        apply_records(engine, [RawRecord(b"[1]", "file:y:1"), RawRecord(_context_event(), "file:y:2")])
    finally:
        engine.dispose()
    monkeypatch.setenv("METATRAIL_STORE_URL", sqlite_url)
    assert main(["dlq", "ls", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(d["source_key"], d["replay_result"]) for d in listed] == [("file:y:1", None)]
    assert "must be a JSON object" in listed[0]["reason"]
    assert main(["dlq", "replay", "--all", "--json"]) == 1  # still invalid
    assert json.loads(capsys.readouterr().out)[0]["result"].startswith("still invalid")
    assert main(["dlq", "replay", "--id", "999"]) == 1
    assert "no dead letter with id 999" in capsys.readouterr().err
    assert main(["dlq", "replay"]) == 2
