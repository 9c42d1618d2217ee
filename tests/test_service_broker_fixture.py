"""The test broker fixture itself: it answers, topics are per test, restarts empty it."""

from __future__ import annotations

from kafka import KafkaConsumer, KafkaProducer

from tests.fixtures.broker import TansuBroker, broker_answers, kafka_test_settings


def test_broker_answers_and_round_trips(kafka_bootstrap: str, topic_prefix: str) -> None:
    assert broker_answers(kafka_bootstrap)
    topic = f"{topic_prefix}.probe"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    producer.send(topic, b"hello").get(timeout=10)
    producer.close()
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    )
    values = [next(iter(consumer)).value]
    consumer.close()
    assert values == [b"hello"]


def test_settings_are_per_test(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix)
    assert settings.events_topic == f"{topic_prefix}.events"
    assert settings.kafka_group.startswith(topic_prefix)


def test_restartable_broker_restarts_empty(restartable_broker: TansuBroker) -> None:
    topic = "restart-probe"
    producer = KafkaProducer(bootstrap_servers=restartable_broker.bootstrap, acks="all")
    producer.send(topic, b"x").get(timeout=10)
    producer.close()
    restartable_broker.stop()
    assert not broker_answers(restartable_broker.bootstrap, timeout_s=1)
    restartable_broker.start()
    assert broker_answers(restartable_broker.bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=restartable_broker.bootstrap)
    assert topic not in consumer.topics()
    consumer.close()
