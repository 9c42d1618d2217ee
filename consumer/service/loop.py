"""The consume loop: poll a batch → validate and apply it in one DB transaction → publish
its dead letters → commit its offsets (design rules 2, 4 and 5).

It reads two topics: ``<prefix>.events`` (our events) and ``<prefix>.openlineage``
(OpenLineage events as OpenLineage's Kafka transport writes them: the event's JSON as the
value), each message decoded by the format of its topic.

Offsets are committed only after the DB transaction that applied the batch committed, and
only for what that transaction covered; apply is idempotent by event id, so a crash
anywhere (before or after the DB commit) at worst re-delivers a batch that changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition
from sqlalchemy import Engine

from metatrail.consumer.apply import ApplyReport, RawRecord, apply_records, retry_transient
from metatrail.consumer.apply.records import record_options
from metatrail.consumer.service.deadletters import DeadLetterPublisher, OutgoingDeadLetter
from metatrail.consumer.service.offsets import first_offsets, merge_offsets, next_offsets
from metatrail.consumer.service.topics import TOPIC_MAX_MESSAGE_BYTES, check_topics
from metatrail.consumer.store.engine import open_engine
from metatrail.schemas.errors import MetatrailError, TransientTransportError, TransportError
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.service")

Batch = Mapping[TopicPartition, Sequence[Any]]


class BatchAbandoned(MetatrailError):
    """A stop was requested while a batch was being retried: it is left uncommitted."""


@dataclass
class ConsumeStats:
    """Running totals of one loop (read them after ``run`` returns, or from ``on_batch``)."""

    batches: int = 0
    messages: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    commits: int = 0
    abandoned_batches: int = 0
    rewound_batches: int = 0


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Called inside ``poll``: commit applied-but-uncommitted offsets of revoked partitions."""

    def __init__(self, loop: ConsumeLoop) -> None:
        self._loop = loop

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self._loop._on_revoked(set(revoked), commit=True)

    def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        self._loop._on_revoked(set(lost), commit=False)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self._loop.assigned = set(assigned)
        self._loop._assignments += 1
        log.info("assigned %s", sorted(f"{tp.topic}:{tp.partition}" for tp in assigned))


class ConsumeLoop:
    """One consumer-group member applying the events topic to the store.

    ``run()`` blocks until ``stop()`` is called (from any thread or a signal handler), then
    finishes the batch in hand, commits what was applied, leaves the group and returns the
    stats. It raises ``StoreError`` when the store fails for good (transient retries
    exhausted): nothing of the failed batch is committed. ``engine`` defaults to one
    opened on ``settings.store_url`` (and disposed by ``run``). ``on_batch(report, stats)``
    is called after each applied batch, ``on_commit(batch)`` once its offsets are
    committed (both in the loop's thread: keep them short).
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine | None = None,
        *,
        on_batch: Callable[[ApplyReport, ConsumeStats], None] | None = None,
        on_commit: Callable[[Batch], None] | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._owns_engine = engine is None
        self._on_batch = on_batch
        self._on_commit = on_commit
        self._stop = threading.Event()
        self._consumer: KafkaConsumer | None = None
        #: Applied in the DB but not yet committed to Kafka (a commit failed).
        self._pending: dict[TopicPartition, OffsetAndMetadata] = {}
        self.stats = ConsumeStats()
        self.started = threading.Event()
        #: Partitions this member holds now (updated on every rebalance).
        self.assigned: set[TopicPartition] = set()
        #: Assignments received, and how many of them the topics were checked after.
        self._assignments = 0
        self._checked_assignments = 1  # the first follows the check at start

    # --- control -------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask the loop to stop after the batch in hand. Safe from threads and signals."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> ConsumeStats:
        """Consume until stopped. See the class docstring for what it raises."""
        check_topics(self.settings)
        engine = self._engine or open_engine(self.settings.store_url)
        publisher = DeadLetterPublisher(self.settings)
        consumer = self._open_consumer()
        self._consumer = consumer
        clean = False
        try:
            self.started.set()
            while not self._stop.is_set():
                batch = consumer.poll(
                    timeout_ms=self.settings.kafka_poll_timeout_ms,
                    max_records=self.settings.kafka_max_poll_records,
                )
                if batch:
                    self._process(consumer, engine, publisher, batch)
                if self._assignments > self._checked_assignments:
                    self._recheck_topics()
            clean = True
        finally:
            if clean:
                self._commit(consumer, {})  # whatever is still pending
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)  # leaves the group
            self._consumer = None
            publisher.close()
            if self._owns_engine:
                engine.dispose()
        return self.stats

    def _open_consumer(self) -> KafkaConsumer:
        s = self.settings
        try:
            consumer = KafkaConsumer(
                **{**s.kafka_client_kwargs(), "client_id": "metatrail-consumer"},
                group_id=s.kafka_group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=s.kafka_max_poll_records,
                max_poll_interval_ms=s.kafka_max_poll_interval_ms,
                session_timeout_ms=s.kafka_session_timeout_ms,
                heartbeat_interval_ms=s.kafka_heartbeat_interval_ms,
                max_partition_fetch_bytes=max(1_048_576, s.kafka_max_message_bytes, s.openlineage_max_event_bytes),
                receive_message_max_bytes=4 * TOPIC_MAX_MESSAGE_BYTES,
            )
        except KafkaError as exc:
            raise TransientTransportError(f"cannot connect to Kafka at {s.kafka_bootstrap}: {exc}") from exc
        consumer.subscribe([s.events_topic, s.openlineage_topic], listener=_Rebalance(self))
        return consumer

    def _process(self, consumer: KafkaConsumer, engine: Engine, publisher: DeadLetterPublisher, batch: Batch) -> None:
        started = time.monotonic()
        records, by_key = _raw_records(batch, self.settings.openlineage_topic)
        try:
            report = self._apply(engine, records)
        except BatchAbandoned:
            self.stats.abandoned_batches += 1
            log.warning("stop requested during retries: batch of %d left uncommitted", len(records))
            return
        letters = [
            OutgoingDeadLetter(
                payload=by_key[dl.source_key].value or b"",
                key=by_key[dl.source_key].key,
                reason=dl.reason,
                topic=by_key[dl.source_key].topic,
                partition=by_key[dl.source_key].partition,
                offset=by_key[dl.source_key].offset,
            )
            for dl in report.dead_letters
            if dl.source_key in by_key
        ]
        try:
            publisher.publish(letters)
        except TransportError as exc:
            # Applied (idempotently) but its dead letters are not on the topic: re-read the
            # batch instead of committing, so they are published on the next pass.
            log.error("%s; re-reading the batch", exc)
            self._rewind(consumer, batch)
            return
        self._count(report, len(records))
        committed = self._commit(consumer, next_offsets(batch))
        if committed and self._on_commit is not None:
            self._on_commit(batch)
        log.debug(
            "batch of %d: %d applied, %d duplicates, %d dead-lettered in %.3f s",
            len(records), report.applied, report.duplicates, report.dead_lettered, time.monotonic() - started,
        )
        if self._on_batch is not None:
            self._on_batch(report, self.stats)

    def _apply(self, engine: Engine, records: list[RawRecord]) -> ApplyReport:
        def attempts(work: Callable[[], ApplyReport]) -> ApplyReport:
            count = 0

            def attempt() -> ApplyReport:
                nonlocal count
                count += 1
                if count > 1 and self._stop.is_set():
                    raise BatchAbandoned("stop requested while retrying a batch")
                return work()

            return retry_transient(attempt, self.settings)

        return apply_records(engine, records, **(record_options(self.settings) | {"attempts": attempts}))

    def _recheck_topics(self) -> None:
        """After a rebalance (outside ``poll``): the topics may have been re-created (a
        broker restarted without its data); check them again. A broker that does not
        answer now is not a reason to stop consuming."""
        self._checked_assignments = self._assignments
        try:
            check_topics(self.settings)
        except TransportError as exc:
            log.warning("could not check the topics after a rebalance: %s", exc)

    def _count(self, report: ApplyReport, messages: int) -> None:
        self.stats.batches += 1
        self.stats.messages += messages
        self.stats.applied += report.applied
        self.stats.duplicates += report.duplicates
        self.stats.dead_lettered += report.dead_lettered

    def _commit(self, consumer: KafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]) -> bool:
        """Commit ``offsets`` plus anything pending; on failure keep them pending (the DB
        already has the batch, so a re-delivery after a lost commit changes nothing).
        Returns whether the commit went through."""
        wanted = merge_offsets(self._pending, offsets)
        if not wanted:
            return False
        try:
            consumer.commit(offsets=wanted)
        except CommitFailedError as exc:
            # The group rebalanced under us: these partitions may belong to someone else
            # now, who will re-read (and skip as duplicates) from the last commit.
            log.warning("commit refused after a rebalance (%s); batch will be re-delivered", exc)
            self._pending = {}
            return False
        except KafkaError as exc:
            log.warning("offset commit failed (%s); will retry with the next batch", exc)
            self._pending = wanted
            return False
        self._pending = {}
        self.stats.commits += 1
        return True

    def _rewind(self, consumer: KafkaConsumer, batch: Batch) -> None:
        self.stats.rewound_batches += 1
        for tp, offset in first_offsets(batch).items():
            with contextlib.suppress(KafkaError, AssertionError, ValueError):
                consumer.seek(tp, offset)
        time.sleep(1.0)  # the broker is in trouble; do not spin

    def _on_revoked(self, partitions: set[TopicPartition], *, commit: bool) -> None:
        """Between batches (inside ``poll``): nothing is in flight, but a failed commit may
        have left applied offsets pending; commit those of the revoked partitions."""
        mine = {tp: meta for tp, meta in self._pending.items() if tp in partitions}
        if commit and mine and self._consumer is not None:
            with contextlib.suppress(KafkaError):
                self._consumer.commit(offsets=mine)
        for tp in partitions:
            self._pending.pop(tp, None)
        self.assigned -= partitions
        if partitions:
            log.info("revoked %s", sorted(f"{tp.topic}:{tp.partition}" for tp in partitions))


def _raw_records(batch: Batch, openlineage_topic: str) -> tuple[list[RawRecord], dict[str, Any]]:
    records: list[RawRecord] = []
    by_key: dict[str, Any] = {}
    for messages in batch.values():
        for m in messages:
            key = f"kafka:{m.topic}:{m.partition}:{m.offset}"
            by_key[key] = m
            fmt = "openlineage" if m.topic == openlineage_topic else "metatrail"
            records.append(RawRecord(m.value or b"", key, m.topic, m.partition, m.offset, fmt))
    return records, by_key
