"""The consume loop against the real test broker and every store backend."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer

from metatrail.consumer.service.loop import ConsumeLoop
from metatrail.consumer.store.engine import open_engine
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


def test_pipeline_events_reach_the_store_and_offsets_follow(
    kafka_bootstrap: str, topic_prefix: str, store_url: str
) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, store_url)
    workload = pipeline_workload(runs=20)
    engine = open_engine(store_url)
    try:
        with running_loop(settings, engine) as loop:
            assert loop.started.wait(30)
            publish_events(kafka_bootstrap, settings.events_topic, workload.events)
            wait_for(lambda: applied_count(engine) == len(workload.events), 60, what="all events applied")
            wait_for(lambda: committed_total(settings, kafka_bootstrap) == len(workload.events), 30,
                     what="offsets committed")
        assert canonical_dump(engine) == workload.expected()
        assert loop.stats.applied == len(workload.events)
        assert loop.stats.duplicates == 0
    finally:
        engine.dispose()


def test_topics_are_created_with_configured_partitions(kafka_bootstrap: str, topic_prefix: str, sqlite_url: str) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, sqlite_url, kafka_partitions=4)
    loop = ConsumeLoop(settings)
    loop.stop()  # returns right after start-up
    loop.run()
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        topics = set(admin.list_topics())
    finally:
        admin.close()
    assert {settings.events_topic, settings.dlq_topic, settings.triggers_topic} <= topics
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap)
    try:
        assert len(consumer.partitions_for_topic(settings.events_topic) or ()) == 4
    finally:
        consumer.close()
