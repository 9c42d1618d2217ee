"""Publishing dead letters to ``<prefix>.events.dlq`` (the table row is written by apply).

Each dead letter is the original message bytes and key, with headers saying why and where
it came from: ``metatrail.reason``, ``metatrail.source_topic``, ``metatrail.source_partition``,
``metatrail.source_offset``, ``metatrail.source_key``. Delivery is at least once: a batch
re-delivered after a crash may publish its dead letters again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka.errors import KafkaError

from metatrail.consumer.service.topics import TOPIC_MAX_MESSAGE_BYTES
from metatrail.schemas.errors import TransientTransportError
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.service.dlq")

#: Room for the record's key, headers and batch framing on top of the payload.
_FRAMING_BYTES = 64 * 1024
#: Reasons are cut to this many bytes in the header (the table keeps the whole reason).
_MAX_REASON_BYTES = 4096


@dataclass(frozen=True)
class OutgoingDeadLetter:
    """One rejected message: its original bytes and key, the reason, and its position."""

    payload: bytes
    key: bytes | None
    reason: str
    topic: str
    partition: int
    offset: int

    @property
    def source_key(self) -> str:
        return f"kafka:{self.topic}:{self.partition}:{self.offset}"


class DeadLetterPublisher:
    """A producer for the dead-letter topic. Not thread-safe; one per consume loop."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._topic = settings.dlq_topic
        self._producer: KafkaProducer | None = None

    def _client(self) -> KafkaProducer:
        if self._producer is None:
            try:
                self._producer = KafkaProducer(
                    **self._settings.kafka_client_kwargs(),
                    acks="all",
                    retries=5,
                    max_request_size=TOPIC_MAX_MESSAGE_BYTES + _FRAMING_BYTES,
                    compression_type=None,
                )
            except KafkaError as exc:
                raise TransientTransportError(f"cannot connect the dead-letter producer: {exc}") from exc
        return self._producer

    def publish(self, letters: Sequence[OutgoingDeadLetter], timeout_s: float = 30.0) -> None:
        """Send ``letters`` and wait until the broker acknowledged all of them.

        Raises ``TransientTransportError`` when the broker does not acknowledge in time;
        the caller must then not commit the batch's offsets.
        """
        if not letters:
            return
        producer = self._client()
        futures = []
        try:
            for letter in letters:
                payload, truncated = _fit(letter.payload)
                headers = [
                    ("metatrail.reason", letter.reason.encode("utf-8")[:_MAX_REASON_BYTES]),
                    ("metatrail.source_topic", letter.topic.encode()),
                    ("metatrail.source_partition", str(letter.partition).encode()),
                    ("metatrail.source_offset", str(letter.offset).encode()),
                    ("metatrail.source_key", letter.source_key.encode()),
                ]
                if truncated:
                    headers.append(("metatrail.truncated_from_bytes", str(len(letter.payload)).encode()))
                futures.append(producer.send(self._topic, value=payload, key=letter.key, headers=headers))
            producer.flush(timeout=timeout_s)
            for future in futures:
                future.get(timeout=timeout_s)
        except KafkaError as exc:
            raise TransientTransportError(f"dead letters not acknowledged by {self._topic}: {exc}") from exc
        log.warning("dead-lettered %d message(s) to %s", len(letters), self._topic)

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                producer.close(timeout=5)


def _fit(payload: bytes) -> tuple[bytes, bool]:
    """The payload, cut to what the topic accepts (the table row keeps the original)."""
    if len(payload) <= TOPIC_MAX_MESSAGE_BYTES:
        return payload, False
    return payload[:TOPIC_MAX_MESSAGE_BYTES], True
