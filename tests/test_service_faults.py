"""Faults the consume loop must survive: a second member joining the group, and database
connections killed in the middle of a batch."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text

from metatrail.consumer.store.engine import open_engine
from tests.fixtures.backends import backend_url
from tests.fixtures.broker import kafka_test_settings
from tests.fixtures.service import (
    applied_count,
    canonical_dump,
    committed_total,
    pipeline_workload,
    publish_events,
    running_loop,
    wait_for,
)

pytestmark = pytest.mark.kafka


def test_two_consumers_share_the_partitions_and_apply_each_event_once(
    kafka_bootstrap: str, topic_prefix: str, server_databases: dict, tmp_path: Any
) -> None:
    store_url = backend_url("postgresql", server_databases, tmp_path)
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, store_url, kafka_partitions=6,
                                   kafka_max_poll_records=100)
    workload = pipeline_workload(runs=240)  # 6,000 events
    engine = open_engine(store_url)
    try:
        with running_loop(settings, engine) as first, running_loop(settings, engine) as second:
            # 6 partitions of the events topic and 6 of <prefix>.openlineage, which consume also reads
            wait_for(lambda: len(first.assigned) + len(second.assigned) == 12 and first.assigned and second.assigned,
                     60, what="both members hold partitions")
            assert not first.assigned & second.assigned
            publish_events(kafka_bootstrap, settings.events_topic, workload.events)
            wait_for(lambda: committed_total(settings, kafka_bootstrap) == len(workload.events), 120,
                     what="every offset committed")
        assert first.stats.applied > 0 and second.stats.applied > 0
        assert first.stats.applied + second.stats.applied == len(workload.events)
        assert canonical_dump(engine) == workload.expected()
    finally:
        engine.dispose()


def _backend_id(dbapi_conn: Any, backend: str) -> int:
    if backend == "postgresql":
        return int(dbapi_conn.info.backend_pid)
    return int(dbapi_conn.thread_id())


def install_connection_killer(engine: Engine, backend: str, admin: Engine, every: int, kills: int) -> dict[str, int]:
    """Every ``every``-th statement on ``engine`` (up to ``kills`` times), kill the server
    side of the connection running it, from another connection, before it executes."""
    state = {"statements": 0, "kills": 0}

    @event.listens_for(engine, "before_cursor_execute")
    def _kill(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        state["statements"] += 1
        if state["kills"] >= kills or state["statements"] % every:
            return
        if not statement.lstrip().upper().startswith(("INSERT", "UPDATE", "SELECT")):
            return
        victim = _backend_id(conn.connection.dbapi_connection, backend)
        with admin.connect() as a:
            if backend == "postgresql":
                a.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
            else:
                a.execute(text(f"KILL {victim}"))
        time.sleep(0.05)  # let the server finish off the backend
        state["kills"] += 1

    return state


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_db_connection_killed_mid_batch_is_retried_without_loss_or_duplicates(
    backend: str, kafka_bootstrap: str, topic_prefix: str, server_databases: dict, tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store_url = backend_url(backend, server_databases, tmp_path)
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, store_url, kafka_max_poll_records=200)
    workload = pipeline_workload(runs=80)  # 2,000 events
    engine = open_engine(store_url)
    admin = create_engine(store_url, isolation_level="AUTOCOMMIT")
    state = install_connection_killer(engine, backend, admin, every=7, kills=4)
    caplog.set_level(logging.WARNING, logger="metatrail.apply")
    try:
        publish_events(kafka_bootstrap, settings.events_topic, workload.events)
        with running_loop(settings, engine) as loop:
            wait_for(lambda: committed_total(settings, kafka_bootstrap) == len(workload.events), 120,
                     what="every offset committed")
        assert state["kills"] == 4
        assert "retrying the whole batch" in caplog.text
        assert loop.stats.applied == len(workload.events)
        assert applied_count(engine) == len(workload.events)
        assert canonical_dump(engine) == workload.expected()
    finally:
        engine.dispose()
        admin.dispose()


DOWN_STORE = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"  # nothing listens on port 1


def test_store_down_exits_non_zero_without_committing(
    kafka_bootstrap: str, topic_prefix: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metatrail.consumer.cli import main
    from tests.fixtures.broker import settings_env

    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, DOWN_STORE, db_retry_attempts=3)
    workload = pipeline_workload(runs=2)
    publish_events(kafka_bootstrap, settings.events_topic, workload.events)
    for name, value in settings_env(settings).items():
        monkeypatch.setenv(name, value)
    assert main(["consume"]) == 1  # retries exhausted: a metatrail error, exit 1
    assert committed_total(settings, kafka_bootstrap) == 0

    # nothing was lost: a consumer on a working store applies every event
    good = kafka_test_settings(kafka_bootstrap, topic_prefix, sqlite_url)
    engine = open_engine(sqlite_url)
    try:
        with running_loop(good, engine):
            wait_for(lambda: committed_total(good, kafka_bootstrap) == len(workload.events), 60, what="committed")
        assert canonical_dump(engine) == workload.expected()
    finally:
        engine.dispose()


def test_stop_while_retrying_abandons_the_batch_uncommitted(kafka_bootstrap: str, topic_prefix: str) -> None:
    from metatrail.consumer.service.loop import ConsumeLoop

    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, DOWN_STORE, db_retry_attempts=50,
                                   db_retry_max_wait_s=0.2)
    publish_events(kafka_bootstrap, settings.events_topic, pipeline_workload(runs=1).events)
    loop = ConsumeLoop(settings)

    def stop_when_polled() -> None:
        wait_for(lambda: bool(loop.assigned), 30, what="assignment")
        time.sleep(1.0)  # the batch is failing and being retried by now
        loop.stop()

    stopper = threading.Thread(target=stop_when_polled, daemon=True)
    stopper.start()
    stats = loop.run()  # returns normally: a requested stop is not an error
    stopper.join(5)
    assert stats.abandoned_batches == 1 and stats.commits == 0
    assert committed_total(settings, kafka_bootstrap) == 0
