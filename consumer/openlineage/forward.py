"""``metatrail forward openlineage URL``: send executions to an OpenLineage endpoint as
they are recorded.

A member of its own consumer group (``<METATRAIL_KAFKA_GROUP>.openlineage-forward``) on
``<prefix>.events``. For each batch it picks the executions whose start or end the batch
records, waits until the store has applied those events (the consumer service writes the
store; the RunEvents are built from it, by the same code as ``metatrail export``), posts
START for a start and COMPLETE / FAIL / ABORT for an end, and commits the batch's offsets
only after the target accepted every event of it. So the target gets every event at
least once: a crash or a stop before the commit re-sends the batch; a target that is
down is retried (with back-off) until it answers, without committing. An event the
target refuses for good (a 4xx) is logged and counted, not retried. Executions that came
from OpenLineage are not sent back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import TopicPartition
from tenacity import Retrying, retry_if_exception, retry_if_result, stop_after_delay, stop_when_event_set
from tenacity import wait_exponential, wait_fixed

from metatrail.consumer.openlineage.export import run_events
from metatrail.consumer.openlineage.target import HttpTarget
from metatrail.consumer.query.store import Store
from metatrail.consumer.service.offsets import next_offsets
from metatrail.schemas.errors import EventValidationError, MetatrailError, TransientTransportError
from metatrail.schemas.events import (
    ExecutionCached,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRecorded,
    ExecutionStarted,
)
from metatrail.schemas.parse import parse_event
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.openlineage")

_TERMINAL = frozenset({"COMPLETE", "FAILED", "CACHED", "CANCELED"})


class ForwardAbandoned(MetatrailError):
    """A stop was requested while a batch was waiting or being retried: not committed."""


@dataclass
class ForwardStats:
    """Running totals of one forwarder."""

    batches: int = 0
    sent: int = 0
    refused: int = 0
    not_applied: int = 0
    commits: int = 0


def forward_group(settings: Settings) -> str:
    """The forwarder's consumer group: its own, so it reads every event the service reads."""
    return f"{settings.kafka_group}.openlineage-forward"


def wanted_runs(messages: Sequence[Any]) -> dict[str, tuple[set[str], set[str]]]:
    """execution id -> ({"START", "END"} it must send, event ids that record them), from
    the execution events among raw messages (anything else, valid or not, is skipped)."""
    wanted: dict[str, tuple[set[str], set[str]]] = {}
    for message in messages:
        try:
            event = parse_event(message.value or b"")
        except EventValidationError:
            continue  # the consumer service dead-letters it
        if isinstance(event, ExecutionStarted):
            what = "START"
        elif isinstance(event, (ExecutionCompleted, ExecutionFailed, ExecutionCached)):
            what = "END"
        elif isinstance(event, ExecutionRecorded):
            what = "END" if event.state in _TERMINAL else "START"
        else:
            continue
        kinds, ids = wanted.setdefault(str(event.execution_id), (set(), set()))
        kinds.add(what)
        ids.add(str(event.event_id))
    return wanted


class OpenLineageForwarder:
    """``run()`` blocks until ``stop()`` (any thread or a signal handler); see module doc.
    ``wait_applied_s``: how long a batch waits for the store to apply its events before
    the ones still missing (lagging, or dead-lettered by the service) are skipped."""

    def __init__(self, settings: Settings, target: HttpTarget, store: Store, *, wait_applied_s: float = 60.0,
                 max_backoff_s: float = 30.0) -> None:
        self.settings = settings
        self.target = target
        self.store = store
        self.wait_applied_s = wait_applied_s
        self.max_backoff_s = max_backoff_s
        self.stats = ForwardStats()
        self.started = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> ForwardStats:
        s = self.settings
        try:
            consumer = KafkaConsumer(
                **{**s.kafka_client_kwargs(), "client_id": "metatrail-openlineage-forward"},
                group_id=forward_group(s), enable_auto_commit=False, auto_offset_reset="earliest",
                max_poll_records=s.kafka_max_poll_records, max_poll_interval_ms=s.kafka_max_poll_interval_ms,
                session_timeout_ms=s.kafka_session_timeout_ms, heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
            )
        except KafkaError as exc:
            raise TransientTransportError(f"cannot connect to Kafka at {s.kafka_bootstrap}: {exc}") from exc
        consumer.subscribe([s.events_topic])
        try:
            self.started.set()
            while not self._stop.is_set():
                batch = consumer.poll(timeout_ms=s.kafka_poll_timeout_ms, max_records=s.kafka_max_poll_records)
                if not batch:
                    continue
                try:
                    self._forward([m for messages in batch.values() for m in messages])
                except ForwardAbandoned:
                    log.warning("stop requested: batch left uncommitted (it is sent again on restart)")
                    break
                self._commit(consumer, batch)
        finally:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)
        return self.stats

    def _forward(self, messages: Sequence[Any]) -> None:
        self.stats.batches += 1
        wanted = wanted_runs(messages)
        if not wanted:
            return
        event_ids = {i for _, ids in wanted.values() for i in ids}
        missing = self._wait_applied(event_ids)
        if missing:
            self.stats.not_applied += len(missing)
            log.warning("%d execution event(s) not in the store after %.0f s: skipped", len(missing),
                        self.wait_applied_s)
        executions = self.store.get_many("execution", sorted(wanted))
        ordered = [executions[x] for x in sorted(executions)]  # ids are time-ordered (UUIDv7)
        for event in run_events(self.store, ordered):
            kind = "START" if event["eventType"] == "START" else "END"
            if kind in wanted[event["run"]["runId"]][0]:
                self._send(event)

    def _wait_applied(self, event_ids: set[str]) -> set[str]:
        """The event ids still not applied when all are, the time is up, or (raising
        ``ForwardAbandoned``) a stop is requested."""
        retrying = Retrying(
            stop=stop_after_delay(self.wait_applied_s) | stop_when_event_set(self._stop),
            wait=wait_fixed(0.2), retry=retry_if_result(bool), retry_error_callback=lambda state: state.outcome.result(),
        )
        missing: set[str] = retrying(lambda: event_ids - self.store.applied(event_ids))
        if missing and self._stop.is_set():
            raise ForwardAbandoned("stop requested while waiting for the store")
        return missing

    def _send(self, event: dict[str, Any]) -> None:
        """Send until accepted or refused for good; a stop during retries abandons."""
        retrying = Retrying(
            stop=stop_when_event_set(self._stop),
            wait=wait_exponential(multiplier=0.2, max=self.max_backoff_s),
            retry=retry_if_exception(lambda exc: bool(getattr(exc, "retriable", False))),
            before_sleep=lambda state: log.warning("OpenLineage target: %s; retrying", state.outcome.exception()),
            reraise=True,
        )
        try:
            accepted = retrying(self.target.send, event)
        except TransientTransportError as exc:
            raise ForwardAbandoned(str(exc)) from exc
        if accepted:
            self.stats.sent += 1
        else:
            self.stats.refused += 1

    def _commit(self, consumer: KafkaConsumer, batch: Mapping[TopicPartition, Sequence[Any]]) -> None:
        try:
            consumer.commit(offsets=next_offsets(batch))
            self.stats.commits += 1
        except (CommitFailedError, KafkaError) as exc:
            # Sent but not committed: after a rebalance the batch is sent again (at least once).
            log.warning("offset commit failed (%s); the batch may be sent again", exc)
