"""``metatrail status``: lag per partition, last applied event, dead letters, spool backlog."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from metatrail.consumer.cli import main
from metatrail.consumer.service.status import collect_status, spool_status
from metatrail.consumer.service.topics import ensure_topics
from metatrail.consumer.store.engine import open_engine
from metatrail.schemas.events import ContextUpserted
from metatrail.schemas.ids import new_id
from metatrail.schemas.parse import dump_event
from metatrail.schemas.settings import load_settings
from tests.fixtures.broker import kafka_test_settings, settings_env
from tests.fixtures.service import committed_total, publish, running_loop, wait_for


def _event() -> bytes:
    cid = new_id()
    return dump_event(ContextUpserted(context_id=cid, type="Run", name=f"r-{cid}", run_id=cid))


@pytest.mark.kafka
def test_status_follows_the_group(
    kafka_bootstrap: str, topic_prefix: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, sqlite_url)
    ensure_topics(settings)
    # one message per request: some brokers' end offset counts batches, not records
    for payload in [_event(), _event(), b"garbage", _event()]:
        publish(kafka_bootstrap, settings.events_topic, [(b"k", payload)])
    engine = open_engine(sqlite_url)
    try:
        before = collect_status(settings, engine)
        assert before.group.error is None
        assert before.group.total_lag == 4
        assert all(p.committed is None for p in before.group.partitions)
        assert len(before.group.partitions) == 2 * settings.kafka_partitions  # events and openlineage topics
        assert {p.topic for p in before.group.partitions} == {settings.events_topic, settings.openlineage_topic}
        assert before.store.last_event_id is None and before.store.dead_letters == 0

        with running_loop(settings, engine):
            wait_for(lambda: committed_total(settings, kafka_bootstrap) == 4, 60, what="consumed")
        after = collect_status(settings, engine)
        assert after.group.total_lag == 0
        assert sum(p.committed or 0 for p in after.group.partitions) == 4
        assert after.store.last_event_kind == "context.upserted" and after.store.last_applied_at is not None
        assert (after.store.dead_letters, after.store.dead_letters_pending) == (1, 1)
    finally:
        engine.dispose()

    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    assert main(["status", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["group"]["total_lag"] == 0
    assert printed["store"]["dead_letters"] == 1
    assert printed["spool"]["exists"] is False
    assert main(["status"]) == 0
    assert "total lag 0" in capsys.readouterr().out


def test_status_without_broker_still_reports_the_store(sqlite_url: str) -> None:
    settings = load_settings(store_url=sqlite_url)
    engine = open_engine(sqlite_url)
    try:
        report = collect_status(settings, engine)
    finally:
        engine.dispose()
    assert report.group.error and "METATRAIL_KAFKA_BOOTSTRAP" in report.group.error
    assert report.store.error is None and report.store.dead_letters == 0


def test_spool_backlog_is_read_from_the_producer_spool(tmp_path: Path) -> None:
    from metatrail.producer.spool import Spool

    path = tmp_path / "spool.db"
    assert spool_status(path).exists is False
    spool = Spool(path)
    try:
        spool.append_direct([(str(new_id()), "k", _event()) for _ in range(3)])
        spool.append([(str(new_id()), "k", _event()) for _ in range(2)])  # journal, not yet spooled
        status = spool_status(path)
    finally:
        spool.close()
    assert status.error is None
    assert status.events == 3
    assert status.journal_bytes_pending and status.journal_bytes_pending > 0
