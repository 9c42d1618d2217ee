"""The ``kafka`` transport: kafka-python ``KafkaProducer``, ``acks="all"``, compressed.

Messages go to ``settings.events_topic`` keyed by the root run id (else the execution or
event id), so one run's events stay ordered in one partition. ``send`` waits for every
message of the batch to be acknowledged before returning, so the relay deletes only what
the brokers hold. kafka-python errors are translated by their own ``retriable`` flag; an
unreachable broker is transient (the events wait in the spool).

Size: the producer sends messages up to ``kafka_max_request_bytes`` (the topic's
``max.message.bytes``; 16 MiB on topics metatrail creates), above the consumer's accept
limit (``kafka_max_message_bytes``), so an oversized event reaches the consumer and is
dead-lettered there with its reason. An event refused anyway (larger still, or a topic
with a smaller limit), or refused for any other reason about that record alone, is
reported in a ``RejectedEventsError``: the relay sets it aside and the queue moves on.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
from collections.abc import Sequence
from typing import Any

from metatrail.producer.transports.base import RejectedEventsError, SpooledEvent
from metatrail.schemas.errors import TransientTransportError, TransportError
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.producer")

#: How long ``send`` blocks on metadata when the broker is unreachable.
MAX_BLOCK_MS = 10_000
#: kafka-python errors about one record that sending it again will not cure (when not
#: retriable); any other error concerns the whole batch, which stays in the spool.
RECORD_ERRORS = frozenset(
    {
        "MessageSizeTooLargeError",
        "RecordListTooLargeError",
        "InvalidRecordError",
        "InvalidTimestampError",
        "CorruptRecordError",
    }
)


def _refused(exc: BaseException) -> bool:
    """Whether ``exc`` refuses one record for what it is."""
    return type(exc).__name__ in RECORD_ERRORS and getattr(exc, "retriable", None) is False


def _why(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return f"kafka refused it: {text if name in text else f'{name}: {text}'}"


def _translate(exc: BaseException, what: str) -> TransportError:
    retriable = getattr(exc, "retriable", None)
    name = type(exc).__name__
    if retriable is False and name not in ("NoBrokersAvailable",):
        return TransportError(f"kafka {what} failed: {name}: {exc}")
    return TransientTransportError(f"kafka {what} failed: {name}: {exc}")


def _reachable(server: str, timeout_s: float = 1.0) -> bool:
    host, _, port = server.rpartition(":")
    try:
        with socket.create_connection(
            (host.strip("[]") or "localhost", int(port)), timeout=timeout_s
        ):
            return True
    except (OSError, ValueError):
        return False


#: kafka-python's own generator (see ``isolate_kafka_randomness``).
_KAFKA_RANDOM = random.Random(os.urandom(32))


def isolate_kafka_randomness() -> int:
    """Point every loaded ``kafka.*`` module's ``random`` at a private generator; returns
    how many modules were changed.

    kafka-python picks brokers, shuffles nodes and jitters reconnects with the global
    ``random`` module from its I/O thread, inside the user's process: a seeded training
    program's stream would shift by however many draws the network happened to need. The
    modules look ``random.<function>`` up at call time, so replacing their global name
    with a ``random.Random`` instance (it has the same functions) takes effect at once."""
    changed = 0
    for name, module in list(sys.modules.items()):
        if (name == "kafka" or name.startswith("kafka.")) and getattr(module, "random", None) is random:
            module.random = _KAFKA_RANDOM  # type: ignore[attr-defined]
            changed += 1
    return changed


class KafkaTransport:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = settings.events_topic
        self._producer: Any = None

    def _ensure(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer

            isolate_kafka_randomness()  # before the client's threads start drawing
            s = self.settings
            servers = s.kafka_client_kwargs()["bootstrap_servers"]
            if not any(_reachable(server) for server in servers):
                # kafka-python's constructor leaks sockets when it cannot bootstrap
                raise TransientTransportError(
                    f"kafka: no bootstrap server reachable ({', '.join(servers)})"
                )
            try:
                self._producer = KafkaProducer(
                    acks="all",
                    compression_type=None if s.kafka_compression == "none" else s.kafka_compression,
                    linger_ms=5,
                    max_block_ms=min(MAX_BLOCK_MS, s.kafka_request_timeout_ms),
                    max_request_size=max(s.kafka_max_request_bytes, s.kafka_max_message_bytes),
                    retries=3,
                    **s.kafka_client_kwargs(),
                )
            except Exception as exc:  # NoBrokersAvailable, connection errors, bad config
                raise _translate(exc, "connect") from exc
        return self._producer

    def send(self, batch: Sequence[SpooledEvent]) -> None:
        if not batch:
            return
        producer = self._ensure()
        timeout_s = self.settings.kafka_request_timeout_ms / 1000
        rejected: list[tuple[SpooledEvent, str]] = []
        try:
            futures = []
            for e in batch:
                try:
                    future = producer.send(self.topic, key=e.key.encode(), value=e.payload)
                    futures.append((e, future))
                except Exception as exc:  # refused before sending (larger than max_request_size)
                    if not _refused(exc):
                        raise
                    rejected.append((e, _why(exc)))
            producer.flush(timeout=timeout_s)
            for e, future in futures:
                try:
                    future.get(timeout=timeout_s)
                except Exception as exc:  # refused by the broker
                    if not _refused(exc):
                        raise
                    rejected.append((e, _why(exc)))
        except Exception as exc:
            # Start the next attempt from a fresh client: after a broker restart an old one
            # can keep stale metadata and half-sent batches.
            self._discard()
            raise _translate(exc, "send") from exc
        if rejected:
            raise RejectedEventsError(rejected)

    def _discard(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=0)
            except Exception as exc:
                log.debug("metatrail: discarding the kafka producer: %s", exc)

    def close(self, timeout_s: float) -> bool:
        if self._producer is None:
            return True
        try:
            self._producer.close(timeout=timeout_s)
            return True
        except Exception as exc:
            log.warning("metatrail: closing the kafka producer failed: %s", exc)
            return False
        finally:
            self._producer = None
