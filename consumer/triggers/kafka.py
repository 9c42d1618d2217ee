"""Trigger requests on Kafka: the publisher the relay uses and the topic they go to.

Messages go to ``settings.triggers_topic`` keyed by step id, so the requests of one step
stay ordered in one partition; the worker group shares the partitions.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from metatrail.schemas.errors import TransientTransportError, TransportError
from metatrail.schemas.events import TriggerRequested
from metatrail.schemas.parse import dump_event
from metatrail.schemas.settings import Settings

log = logging.getLogger(__name__)


def ensure_triggers_topic(settings: Settings) -> None:
    """Create the triggers topic if it does not exist (idempotent; the service's topic
    set-up). Raises ``TransportError`` when the broker cannot be reached or refuses."""
    from metatrail.consumer.service.topics import ensure_topics

    ensure_topics(settings, [settings.triggers_topic])


class KafkaTriggerPublisher:
    """Publishes trigger requests and waits for the broker's acknowledgement."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self._settings = settings
        self._timeout_s = settings.kafka_request_timeout_ms / 1000
        try:
            self._producer: Any = KafkaProducer(
                **settings.kafka_client_kwargs(),
                acks="all",
                linger_ms=0,
                max_request_size=settings.kafka_max_message_bytes,
            )
        except KafkaError as exc:
            raise TransientTransportError(f"Kafka at {settings.kafka_bootstrap}: {exc}") from exc

    def publish(self, requests: Sequence[TriggerRequested]) -> None:
        """Send every request and wait for all acknowledgements. Raises
        ``TransientTransportError`` (retry later) on any failure."""
        from kafka.errors import KafkaError

        try:
            futures = [
                self._producer.send(
                    self._settings.triggers_topic,
                    key=str(r.step_id).encode(),
                    value=dump_event(r),
                )
                for r in requests
            ]
            self._producer.flush(self._timeout_s)
            for future in futures:
                future.get(timeout=self._timeout_s)
        except KafkaError as exc:
            raise TransientTransportError(f"publishing trigger requests: {exc}") from exc
        except Exception as exc:  # kafka-python raises plain errors on bad state too
            raise TransportError(f"publishing trigger requests: {exc}") from exc

    def close(self, timeout_s: float = 5.0) -> None:
        with contextlib.suppress(Exception):
            self._producer.close(timeout=timeout_s)
