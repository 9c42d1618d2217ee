"""Event size with the Kafka transport, against the real test broker: an event over the
consumer's 1 MB limit is sent and dead-lettered by the consumer; one that Kafka refuses
anyway is set aside next to the spool (0600, with its reason), the queue moves on, and the
exit message and `metatrail flush` say so (exit status 1)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import metatrail
from metatrail import Artifact, log_artifact, log_metric, run
from metatrail.consumer.service.topics import ensure_topics
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import DeadLetterRow
from metatrail.producer import emitter
from metatrail.schemas.parse import parse_event
from tests.fixtures.broker import kafka_test_settings, settings_env
from tests.fixtures.service import applied_count, dead_letter_count, running_loop, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024


def test_an_event_over_the_consumers_limit_is_sent_and_dead_lettered_by_the_consumer(
    kafka_bootstrap: str, topic_prefix: str, store_url: str, tmp_path: Path
) -> None:
    settings = kafka_test_settings(
        kafka_bootstrap, topic_prefix, store_url, kafka_max_poll_interval_ms=15_000
    )
    metatrail.configure(
        transport="kafka", kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix=topic_prefix,
        spool_path=tmp_path / "spool.db", relay_interval_ms=20,
    )
    engine = open_engine(store_url)
    try:
        with running_loop(settings, engine):
            with run(f"big-{topic_prefix}"):
                log_artifact(Artifact("mem://big", properties={"blob": "x" * (2 * MiB)}))
                for i in range(5):
                    log_metric("after", float(i), step=i)
            assert metatrail.flush(60), "the spool is wedged behind the large event"
            assert emitter.get().spool.pending() == 0
            # the run's two context events and the five metrics apply; the large one is a
            # dead letter with its reason
            wait_for(lambda: applied_count(engine) == 7 and dead_letter_count(engine) == 1, 90,
                     what="7 applied, 1 dead letter")
        with session_scope(engine, write=False) as s:
            [letter] = s.scalars(select(DeadLetterRow))
            assert "larger than the limit" in letter.reason
            assert letter.payload_bytes > 2 * MiB
    finally:
        emitter.shutdown(5)
        engine.dispose()


RECORD = textwrap.dedent(
    """
    import os, sys
    from metatrail import Artifact, log_artifact, log_metric, run

    with run("refused"):
        log_artifact(Artifact("mem://huge", properties={"blob": "x" * (3 * 1024 * 1024)}))
        for i in range(5):
            log_metric("after", float(i), step=i)
    if sys.argv[1] == "die":
        os._exit(0)  # leave everything in the spool for `metatrail flush`
    """
)


def _topic_events(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(parse_event(r.value) for r in records)
        return got
    finally:
        consumer.close()


def _setup(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> tuple[Any, dict[str, str]]:
    # a producer limit below the event: kafka refuses it (MessageSizeTooLargeError), as a
    # broker whose topic has a smaller max.message.bytes would
    settings = kafka_test_settings(
        kafka_bootstrap, topic_prefix, spool_path=tmp_path / "spool.db",
        kafka_max_request_bytes=2 * MiB, relay_interval_ms=20, exit_flush_timeout_s=30,
    )
    ensure_topics(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env.update(settings_env(settings), PYTHONPATH=str(REPO))
    (tmp_path / "record.py").write_text(RECORD)
    return settings, env


def _check_set_aside(tmp_path: Path, events: list[Any]) -> None:
    letters = tmp_path / "spool.deadletters.jsonl"
    assert stat.S_IMODE(letters.stat().st_mode) == 0o600
    [entry] = [json.loads(line) for line in letters.read_text().splitlines()]
    assert "MessageSizeTooLargeError" in entry["reason"]
    refused = parse_event(entry["payload"].encode(), max_bytes=4 * MiB)
    assert refused.kind == "artifact.recorded" and entry["payload_bytes"] > 3 * MiB
    assert refused.event_id not in {e.event_id for e in events}


def test_an_event_kafka_refuses_is_set_aside_and_the_exit_message_says_so(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings, env = _setup(kafka_bootstrap, topic_prefix, tmp_path)
    done = subprocess.run([sys.executable, "record.py", "exit"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    letters = tmp_path / "spool.deadletters.jsonl"
    warning, summary = done.stderr.splitlines()  # when it happened, and at exit
    assert "cannot be delivered: kafka refused it: [Error 10] MessageSizeTooLargeError" in warning
    assert summary == (
        f"metatrail: 7 events delivered; 1 refused ({_reason(letters)}) and set aside in "
        f"{letters}: they will not be delivered"
    )
    events = _topic_events(kafka_bootstrap, settings.events_topic, 7)
    assert len(events) == 7  # everything behind the refused event went on
    _check_set_aside(tmp_path, events)


def _reason(letters: Path) -> str:
    return str(json.loads(letters.read_text().splitlines()[0])["reason"])


def test_flush_sets_a_refused_event_aside_delivers_the_rest_and_exits_non_zero(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    settings, env = _setup(kafka_bootstrap, topic_prefix, tmp_path)
    # recorded while no broker answers, and the process dies: everything stays spooled
    offline = {**env, "METATRAIL_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    subprocess.run([sys.executable, "record.py", "die"], env=offline, cwd=tmp_path, check=True,
                   capture_output=True, timeout=120)
    flush = [sys.executable, "-m", "metatrail", "flush", "--timeout", "60"]
    out = subprocess.run(flush, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert out.returncode == 1, out.stdout + out.stderr
    letters = tmp_path / "spool.deadletters.jsonl"
    assert out.stdout.startswith("delivered 7 events from"), out.stdout
    refused = f"; 1 refused and set aside in {letters} (kafka refused it: [Error 10] MessageSize"
    assert refused in out.stdout, out.stdout
    assert "remain" not in out.stdout
    assert "Traceback" not in out.stderr
    events = _topic_events(kafka_bootstrap, settings.events_topic, 7)
    assert len({e.event_id for e in events}) == 7
    _check_set_aside(tmp_path, events)
    again = subprocess.run(flush, env=env, cwd=tmp_path, capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 0 and "delivered 0 events" in again.stdout  # nothing was left
