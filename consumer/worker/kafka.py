"""The Kafka worker: a member of a consumer group on the triggers topic.

Each message is one ``TriggerRequested``; the worker handles it (see
:mod:`metatrail.consumer.worker.runner`), publishes the retry request when the step failed and may
retry, then commits the message's offset. A crash before the commit redelivers the
message; the claim table makes the redelivery a no-op. Several workers with the same group
share the partitions (requests are keyed by step id).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from metatrail.consumer.apply import retry_transient
from metatrail.consumer.triggers.kafka import KafkaTriggerPublisher, ensure_triggers_topic
from metatrail.consumer.worker.runner import Outcome, TriggerRunner
from metatrail.schemas.errors import EventValidationError, MetatrailError, TransientTransportError
from metatrail.schemas.events import TriggerRequested
from metatrail.schemas.parse import parse_event
from metatrail.schemas.settings import Settings

if TYPE_CHECKING:
    from metatrail.producer.steps import Step

log = logging.getLogger(__name__)


def default_group(settings: Settings) -> str:
    """The workers' consumer group: the consume group's name plus ``.workers``."""
    return f"{settings.kafka_group}.workers"


class KafkaWorker:
    """Runs triggered steps from the triggers topic until ``stop()`` (blocking ``run``)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        steps: Iterable[Step],
        *,
        group: str | None = None,
        worker_id: str | None = None,
        retry_base_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.group = group or default_group(settings)
        kwargs: dict[str, Any] = {"worker_id": worker_id}
        if retry_base_s is not None:
            kwargs["retry_base_s"] = retry_base_s
        self.runner = TriggerRunner(engine, steps, **kwargs)
        self.outcomes: list[Outcome] = []
        self._stopping = threading.Event()
        self._consumer: Any = None
        self._publisher: KafkaTriggerPublisher | None = None

    def stop(self) -> None:
        """Ask ``run`` to return after the message in hand."""
        self._stopping.set()

    def _open(self) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        ensure_triggers_topic(self.settings)
        s = self.settings
        try:
            self._consumer = KafkaConsumer(
                s.triggers_topic,
                **s.kafka_client_kwargs(),
                group_id=self.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=1,
                max_poll_interval_ms=s.kafka_max_poll_interval_ms,
                session_timeout_ms=s.kafka_session_timeout_ms,
                heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
                fetch_max_bytes=max(s.kafka_max_message_bytes, 1_048_576),
            )
        except KafkaError as exc:
            raise TransientTransportError(f"Kafka at {s.kafka_bootstrap}: {exc}") from exc

    def _publish_retry(self, request: TriggerRequested) -> None:
        if self._publisher is None:
            self._publisher = KafkaTriggerPublisher(self.settings)
        self._publisher.publish([request])

    def _handle(self, payload: bytes) -> None:
        try:
            event = parse_event(payload, max_bytes=self.settings.kafka_max_message_bytes)
        except EventValidationError as exc:
            log.error("triggers topic: dropping an invalid message: %s", exc)
            return
        if not isinstance(event, TriggerRequested):
            log.error("triggers topic: dropping a %s event", event.kind)
            return
        wait_s = self.runner.due_in_s(event)
        if wait_s > 0 and self._stopping.wait(wait_s):
            raise _Stopping
        outcome = retry_transient(lambda: self.runner.handle(event), self.settings)
        self.outcomes.append(outcome)
        if outcome.retry is not None:
            self._publish_retry(outcome.retry)

    def run(self, *, idle_timeout_s: float | None = None) -> None:
        """Consume until ``stop()`` (or ``idle_timeout_s`` without a message). Raises
        ``TransportError`` when the broker cannot be reached at start."""
        import time

        from kafka.errors import CommitFailedError, KafkaError

        self._open()
        poll_ms = self.settings.kafka_poll_timeout_ms
        last_message = time.monotonic()
        try:
            while not self._stopping.is_set():
                batches = self._consumer.poll(timeout_ms=poll_ms)
                if not batches:
                    if idle_timeout_s is not None and time.monotonic() - last_message > idle_timeout_s:
                        return
                    continue
                last_message = time.monotonic()
                for records in batches.values():
                    for record in records:
                        try:
                            self._handle(record.value)
                        except _Stopping:
                            return  # not committed: redelivered to whoever runs next
                        except MetatrailError as exc:
                            log.error("trigger at offset %s not handled: %s", record.offset, exc)
                            raise
                try:
                    self._consumer.commit()
                except (CommitFailedError, KafkaError) as exc:
                    log.warning("offset commit failed (the request is redelivered, then skipped): %s", exc)
        finally:
            self.close()

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)
        publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()


class _Stopping(Exception):
    """Internal: a stop request interrupted a retry delay."""
