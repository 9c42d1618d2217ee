"""Creating metatrail's topics at start-up (idempotent)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError, TopicAlreadyExistsError

from metatrail.schemas.errors import TransientTransportError, TransportError
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.service.topics")

#: Largest message a metatrail topic accepts. Larger than any valid event on purpose: an
#: oversized event must reach the consumer so that it is dead-lettered with a reason,
#: instead of vanishing in a producer error. Brokers need ``message.max.bytes`` at least
#: this large for that (docker-compose.yml sets it).
TOPIC_MAX_MESSAGE_BYTES = 16 * 1024 * 1024


def metatrail_topics(settings: Settings) -> list[str]:
    """The topics the service reads and writes: events, dead letters, triggers."""
    return [settings.events_topic, settings.dlq_topic, settings.triggers_topic]


def admin_client(settings: Settings) -> KafkaAdminClient:
    """An admin client; raises ``TransientTransportError`` if no broker answers."""
    try:
        return KafkaAdminClient(**settings.kafka_client_kwargs())
    except KafkaError as exc:
        raise TransientTransportError(
            f"no Kafka broker answers at {settings.kafka_bootstrap}: {exc}"
        ) from exc


def ensure_topics(settings: Settings, topics: list[str] | None = None) -> list[str]:
    """Create the missing topics with ``settings.kafka_partitions`` partitions.

    Idempotent and safe to race with another consumer creating them. Returns the topics
    this call created. Raises ``TransportError`` if the broker refuses.
    """
    wanted = topics if topics is not None else metatrail_topics(settings)
    admin = admin_client(settings)
    try:
        existing = set(admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if not missing:
            return []
        spec: dict[str, Any] = {
            name: {
                "num_partitions": settings.kafka_partitions,
                "replication_factor": settings.kafka_replication_factor,
                "configs": {"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)},
            }
            for name in missing
        }
        created: list[str] = []
        for name, options in spec.items():
            try:
                admin.create_topics({name: options}, wait_for_metadata=True)
                created.append(name)
                log.info("created topic %s (%d partitions)", name, settings.kafka_partitions)
            except TopicAlreadyExistsError:
                pass  # someone else created it meanwhile
        return created
    except KafkaError as exc:
        raise TransportError(f"cannot create topics {wanted}: {exc}") from exc
    finally:
        with contextlib.suppress(Exception):
            admin.close()
