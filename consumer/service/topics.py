"""Creating metatrail's topics at start-up (idempotent), and checking them: a topic
re-created behind the service's back (a broker restarted without its data, then
auto-creating topics on first use) can come back with fewer partitions and without its
message size limit, and nothing would say so."""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType
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
    """The topics the service reads and writes: events, dead letters, triggers, and the
    OpenLineage events it reads."""
    return [settings.events_topic, settings.dlq_topic, settings.triggers_topic, settings.openlineage_topic]


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


#: The topic setting the service relies on (see ``TOPIC_MAX_MESSAGE_BYTES``).
MAX_MESSAGE_BYTES_CONFIG = "max.message.bytes"


@dataclass(frozen=True)
class TopicMismatch:
    """One way a topic differs from what the service expects, and whether it was fixed."""

    topic: str
    problem: str
    fixed: bool
    error: str | None = None

    def __str__(self) -> str:
        outcome = "fixed" if self.fixed else f"NOT fixed ({self.error})" if self.error else "not fixed"
        return f"topic {self.topic} {self.problem}: {outcome}"


def check_topics(settings: Settings, topics: list[str] | None = None) -> list[TopicMismatch]:
    """Compare each topic's partition count (at least ``kafka_partitions``) and
    ``max.message.bytes`` (at least ``TOPIC_MAX_MESSAGE_BYTES``) with what the service
    expects. With ``kafka_repair_topics`` the missing partitions are added and the size
    set, where the broker allows; every mismatch is logged as a warning saying whether it
    was fixed. Creates missing topics first (``ensure_topics``). Returns the mismatches.
    Raises ``TransportError`` only when no broker answers; a broker that cannot describe
    or alter a topic gets a warning, not an error."""
    wanted = topics if topics is not None else metatrail_topics(settings)
    ensure_topics(settings, wanted)
    admin = admin_client(settings)
    try:
        found = [*_partition_mismatches(admin, settings, wanted), *_size_mismatches(admin, settings, wanted)]
    finally:
        with contextlib.suppress(Exception):
            admin.close()
    for mismatch in found:
        log.warning("%s", mismatch)
    return found


def _partition_mismatches(admin: KafkaAdminClient, settings: Settings, topics: list[str]) -> list[TopicMismatch]:
    try:
        described = admin.describe_topics(topics)
    except KafkaError as exc:
        return [TopicMismatch(",".join(topics), "could not be described", False, str(exc))]
    out: list[TopicMismatch] = []
    for topic in described:
        count = len(topic.get("partitions") or ())
        if count >= settings.kafka_partitions:
            continue
        problem = f"has {count} partitions, fewer than METATRAIL_KAFKA_PARTITIONS={settings.kafka_partitions}"
        if not settings.kafka_repair_topics:
            out.append(TopicMismatch(topic["name"], problem, False, "METATRAIL_KAFKA_REPAIR_TOPICS is off"))
            continue
        try:  # safe: apply is order-insensitive, so a run's events may change partition
            admin.create_partitions({topic["name"]: settings.kafka_partitions})
            out.append(TopicMismatch(topic["name"], problem, True))
        except (KafkaError, ValueError) as exc:
            out.append(TopicMismatch(topic["name"], problem, False, f"{type(exc).__name__}: {exc}"))
    return out


def _size_mismatches(admin: KafkaAdminClient, settings: Settings, topics: list[str]) -> list[TopicMismatch]:
    resources = [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]
    try:
        described = admin.describe_configs(resources, config_filter="all").get("topic", {})
    except (KafkaError, ValueError) as exc:
        return [TopicMismatch(",".join(topics), f"{MAX_MESSAGE_BYTES_CONFIG} could not be read", False, str(exc))]
    out: list[TopicMismatch] = []
    for topic in topics:
        entry = (described.get(topic) or {}).get(MAX_MESSAGE_BYTES_CONFIG) or {}
        value = _int(entry.get("value"))
        if value is not None and value >= TOPIC_MAX_MESSAGE_BYTES:
            continue
        problem = (
            f"has {MAX_MESSAGE_BYTES_CONFIG}={value}, less than {TOPIC_MAX_MESSAGE_BYTES}" if value is not None
            else f"does not report {MAX_MESSAGE_BYTES_CONFIG} (the service needs {TOPIC_MAX_MESSAGE_BYTES})"
        )
        if not settings.kafka_repair_topics:
            out.append(TopicMismatch(topic, problem, False, "METATRAIL_KAFKA_REPAIR_TOPICS is off"))
            continue
        config = ConfigResource(
            ConfigResourceType.TOPIC, topic, configs={MAX_MESSAGE_BYTES_CONFIG: str(TOPIC_MAX_MESSAGE_BYTES)}
        )
        try:
            _raise_errors(admin.alter_configs([config], raise_on_unknown=False))
            out.append(TopicMismatch(topic, problem, True))
        except (KafkaError, ValueError, TypeError) as exc:
            out.append(TopicMismatch(topic, problem, False, f"{type(exc).__name__}: {exc}"))
    return out


def _raise_errors(result: Any) -> None:
    """alter_configs returns per-resource results; raise the first error among them."""
    for by_name in (result or {}).values() if isinstance(result, dict) else ():
        for outcome in (by_name or {}).values() if isinstance(by_name, dict) else ():
            if isinstance(outcome, BaseException):
                raise outcome
            if isinstance(outcome, type) and issubclass(outcome, KafkaError) and outcome.errno != 0:
                raise outcome()


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
