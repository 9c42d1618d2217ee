"""The kafka transport against a real broker: a training loop while the broker is down
does not block, and every event arrives, keyed by the root run, once the broker is back."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import metatrail
from metatrail import Artifact, log_metric, run, track
from metatrail.producer import emitter
from metatrail.schemas import parse_event
from metatrail.schemas.ids import context_id
from tests.fixtures.broker import TansuBroker

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@track
def train_epoch(epoch: int) -> Artifact:
    log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    return Artifact(f"mem://ckpt/{epoch}", type="Checkpoint")


def _create_topic(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=[bootstrap], request_timeout_ms=10_000)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    finally:
        admin.close()


def _consume_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=[bootstrap], group_id=None, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        got: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expected and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                got.extend(records)
        return got
    finally:
        consumer.close()


def test_broker_down_during_training_then_every_event_arrives(
    restartable_broker: TansuBroker, tmp_path: Path
) -> None:
    broker = restartable_broker
    broker.stop()  # the broker is down for the whole training loop
    prefix = f"mt-prod-{uuid.uuid4().hex[:8]}"
    metatrail.configure(
        transport="kafka",
        kafka_bootstrap=broker.bootstrap,
        kafka_topic_prefix=prefix,
        kafka_request_timeout_ms=3_000,
        spool_path=tmp_path / "spool.db",
        strict=True,
        relay_interval_ms=50,
    )
    try:
        started = time.monotonic()
        with run("offline-run", pipeline="kafka-test"):
            for epoch in range(25):
                train_epoch(epoch)
        elapsed = time.monotonic() - started
        assert elapsed < 5, f"training was slowed down by the missing broker ({elapsed:.1f}s)"
        assert not metatrail.flush(0.5)  # nothing can be delivered yet
        assert emitter.get().spool.pending() == 2 + 25 * 4 + 1

        broker.start()
        _create_topic(broker.bootstrap, f"{prefix}.events")
        assert metatrail.flush(90), "spooled events were not delivered after the broker came back"
        assert emitter.get().spool.pending() == 0

        records = _consume_all(broker.bootstrap, f"{prefix}.events", expected=103)
        events = [parse_event(r.value) for r in records]
        assert len(events) == 103 and len({e.event_id for e in events}) == 103
        run_id = str(context_id("Run", "offline-run"))
        assert {r.key.decode() for r in records} == {run_id}  # keyed by the root run
        assert len({r.partition for r in records}) == 1  # so one run stays ordered
        kinds = [e.kind for e in events]
        assert kinds.count("execution.completed") == 25 and kinds.count("metrics.logged") == 25
        ordered = [r.offset for r in sorted(records, key=lambda r: r.offset)]
        assert ordered == sorted(ordered)
    finally:
        emitter.shutdown(5)


SEEDED_KAFKA_SCRIPT = """
import random, sys
random.seed(0)
if sys.argv[1] == "track":
    import metatrail
    from metatrail import log_metric, run, track

    @track
    def step(i):
        log_metric("loss", 1.0 / (i + 1), step=i)
        return i

    with run("seeded"):
        for i in range(20):
            step(i)
    assert metatrail.flush(60), "not delivered"
print(random.random(), random.getrandbits(64))
"""


def test_the_kafka_transport_does_not_move_the_users_random_stream(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """kafka-python draws from ``random`` in its I/O thread (broker choice, shuffles,
    reconnect jitter); a seeded program recording through Kafka draws the same numbers as
    without recording."""
    import os
    import subprocess
    import sys

    script = tmp_path / "seeded.py"
    script.write_text(SEEDED_KAFKA_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env.update(
        METATRAIL_TRANSPORT="kafka",
        METATRAIL_KAFKA_BOOTSTRAP=kafka_bootstrap,
        METATRAIL_KAFKA_TOPIC_PREFIX=topic_prefix,
        METATRAIL_SPOOL_PATH=str(tmp_path / "spool.db"),
    )
    out = {}
    for mode in ("track", "plain"):
        done = subprocess.run(
            [sys.executable, str(script), mode], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        out[mode] = done.stdout.split()
    assert out["track"] == out["plain"]
    assert len(_consume_all(kafka_bootstrap, f"{topic_prefix}.events", expected=62)) == 62  # delivered
