"""The consumer checks its topics at start and after every rebalance: a topic re-created
behind its back (a broker restarted without its data, then auto-creating topics) with
fewer partitions or without the message size limit is reported, and repaired where the
broker allows (METATRAIL_KAFKA_REPAIR_TOPICS)."""

from __future__ import annotations

import contextlib
import logging
import time

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from metatrail.consumer.service.topics import TOPIC_MAX_MESSAGE_BYTES, check_topics
from metatrail.consumer.store.engine import open_engine
from metatrail.schemas import ContextUpserted, dump_event, new_id
from tests.fixtures.broker import TansuBroker, kafka_test_settings
from tests.fixtures.service import applied_count, publish, running_loop, wait_for

pytestmark = pytest.mark.kafka


def _admin(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="metatrail-test")


def _partitions(bootstrap: str, topic: str) -> int:
    admin = _admin(bootstrap)
    try:
        return len(admin.describe_topics([topic])[0]["partitions"])
    finally:
        admin.close()


def _max_message_bytes(bootstrap: str, topic: str) -> int | None:
    admin = _admin(bootstrap)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    finally:
        admin.close()
    value = ((described.get("topic") or {}).get(topic) or {}).get("max.message.bytes", {}).get("value")
    return None if value is None else int(value)


def _create_like_auto_create(bootstrap: str, topic: str, partitions: int) -> None:
    """A topic as a broker auto-creates it: its own partition count, no size setting."""
    admin = _admin(bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()


def _mismatch_logged(caplog: pytest.LogCaptureFixture, topic: str, count: int, wanted: int) -> str:
    lines = [r.getMessage() for r in caplog.records if r.name == "metatrail.service.topics"]
    found = [m for m in lines if f"topic {topic} has {count} partitions" in m and f"={wanted}" in m]
    assert found, lines
    return found[-1]


def test_a_topic_with_fewer_partitions_and_no_size_limit_is_reported_and_repaired(
    kafka_bootstrap: str, topic_prefix: str, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, sqlite_url, kafka_partitions=3)
    _create_like_auto_create(kafka_bootstrap, settings.events_topic, 2)
    caplog.set_level(logging.WARNING, logger="metatrail.service.topics")
    engine = open_engine(sqlite_url)
    try:
        with running_loop(settings, engine) as loop:
            wait_for(lambda: bool(loop.assigned), 60, what="partitions assigned")
            message = _mismatch_logged(caplog, settings.events_topic, 2, 3)
            # added where the broker supports CreatePartitions; otherwise the warning says why not
            assert (message.endswith(": fixed") and _partitions(kafka_bootstrap, settings.events_topic) == 3) or (
                "NOT fixed" in message and "CreatePartitions" in message
            )
            assert _max_message_bytes(kafka_bootstrap, settings.events_topic) == TOPIC_MAX_MESSAGE_BYTES
            publish(kafka_bootstrap, settings.events_topic,
                    [dump_event(ContextUpserted(context_id=new_id(), type="Run", name="still consuming"))])
            wait_for(lambda: applied_count(engine) == 1, 60, what="the event applied")
    finally:
        engine.dispose()


def test_without_repair_the_mismatch_is_only_reported(
    kafka_bootstrap: str, topic_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, kafka_partitions=3, kafka_repair_topics=False)
    _create_like_auto_create(kafka_bootstrap, settings.events_topic, 1)
    caplog.set_level(logging.WARNING, logger="metatrail.service.topics")
    found = check_topics(settings)
    assert {(m.topic, m.fixed) for m in found} >= {(settings.events_topic, False)}
    assert all("METATRAIL_KAFKA_REPAIR_TOPICS is off" in str(m) for m in found)
    assert _mismatch_logged(caplog, settings.events_topic, 1, 3)
    assert _partitions(kafka_bootstrap, settings.events_topic) == 1
    assert _max_message_bytes(kafka_bootstrap, settings.events_topic) != TOPIC_MAX_MESSAGE_BYTES


def test_a_topic_recreated_while_consuming_is_checked_after_the_rebalance(
    restartable_broker: TansuBroker, topic_prefix: str, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker restarts empty; the topic comes back re-created: with one partition (the
    test races to create it so), with the broker's default (auto-created by a client's
    metadata request), or by the consumer's own check. Either way the consumer checks it
    after the rebalance: the size limit is repaired, and a partition count below the
    configured one is reported."""
    bootstrap = restartable_broker.bootstrap
    settings = kafka_test_settings(bootstrap, topic_prefix, sqlite_url, kafka_partitions=3)
    caplog.set_level(logging.INFO, logger="metatrail.service.topics")
    engine = open_engine(sqlite_url)
    try:
        with running_loop(settings, engine) as loop:
            # 3 partitions of the events topic (and 3 of <prefix>.openlineage, which consume also reads)
            wait_for(lambda: len({tp for tp in loop.assigned if tp.topic == settings.events_topic}) == 3, 60,
                     what="the first assignment")
            assert not [r for r in caplog.records if r.name == "metatrail.service.topics" and r.levelno >= logging.WARNING]
            caplog.clear()
            restartable_broker.restart()
            with contextlib.suppress(Exception):  # the consumer may have re-created it first
                _create_like_auto_create(bootstrap, settings.events_topic, 1)

            def lines() -> list[str]:
                return [r.getMessage() for r in caplog.records if r.name == "metatrail.service.topics"]

            checked = (f"topic {settings.events_topic} ", f"created topic {settings.events_topic} ")
            wait_for(lambda: any(m.startswith(checked) for m in lines()), 90,
                     what="a check of the re-created topic")
            # The size limit is repaired whatever re-created the topic; a partition count
            # below the configured one is reported (more is harmless and left alone).
            wait_for(lambda: _max_message_bytes(bootstrap, settings.events_topic) == TOPIC_MAX_MESSAGE_BYTES, 30,
                     what="the size limit repaired")
            count = _partitions(bootstrap, settings.events_topic)
            if count < 3:
                _mismatch_logged(caplog, settings.events_topic, count, 3)
    finally:
        engine.dispose()


def test_check_topics_creates_missing_topics(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, kafka_partitions=2)
    assert check_topics(settings) == []
    for topic in (settings.events_topic, settings.dlq_topic, settings.triggers_topic):
        assert _partitions(kafka_bootstrap, topic) == 2
        assert _max_message_bytes(kafka_bootstrap, topic) == TOPIC_MAX_MESSAGE_BYTES
