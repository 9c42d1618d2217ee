"""What ``metatrail status`` reports: consumer-group lag per partition, the last applied
event, dead letters, and this host's producer spool backlog.

Every part is collected independently: an unreachable broker or a missing spool is
reported in its part (``error``) and does not hide the others.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from kafka import KafkaConsumer
from kafka.errors import KafkaError
from kafka.structs import TopicPartition
from sqlalchemy import Engine, select

from metatrail.consumer.service.replay import dead_letter_counts
from metatrail.consumer.store.engine import open_existing, session_scope
from metatrail.consumer.store.models import AppliedEventRow
from metatrail.schemas.errors import MetatrailError
from metatrail.schemas.settings import Settings


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


@dataclass
class GroupStatus:
    bootstrap: str | None
    group: str
    topic: str
    partitions: list[PartitionLag] = field(default_factory=list)
    total_lag: int | None = None
    error: str | None = None


@dataclass
class StoreStatus:
    last_event_id: str | None = None
    last_event_kind: str | None = None
    last_applied_at: datetime | None = None
    dead_letters: int | None = None
    dead_letters_pending: int | None = None
    error: str | None = None


@dataclass
class SpoolStatus:
    path: str
    exists: bool = False
    events: int | None = None
    journal_bytes_pending: int | None = None
    error: str | None = None


@dataclass
class ServiceStatus:
    group: GroupStatus
    store: StoreStatus
    spool: SpoolStatus


def collect_status(settings: Settings, engine: Engine | None = None) -> ServiceStatus:
    """Gather every part of the status; never raises for an unreachable part. Without an
    ``engine``, the store at ``settings.store_url`` is read if there is one (a missing
    store is reported, not created)."""
    if engine is not None:
        store = store_status(engine)
    else:
        try:
            engine = open_existing(settings.store_url)
        except MetatrailError as exc:
            store = StoreStatus(error=str(exc))
        else:
            try:
                store = store_status(engine)
            finally:
                engine.dispose()
    return ServiceStatus(group_status(settings), store, spool_status(settings.spool_path))


def group_status(settings: Settings, timeout_s: float = 5.0) -> GroupStatus:
    """Committed offset, end offset and lag of each partition of the events topic (and of
    ``<prefix>.openlineage`` once it exists) for the consumer group. A partition the group
    never committed counts from its start."""
    status = GroupStatus(settings.kafka_bootstrap, settings.kafka_group, settings.events_topic)
    if not settings.kafka_bootstrap:
        status.error = "no broker configured (METATRAIL_KAFKA_BOOTSTRAP)"
        return status
    consumer: KafkaConsumer | None = None
    try:
        consumer = KafkaConsumer(
            **{
                **settings.kafka_client_kwargs(),
                "client_id": "metatrail-status",
                "request_timeout_ms": int(timeout_s * 1000),
                "bootstrap_timeout_ms": int(timeout_s * 1000),
            },
            group_id=settings.kafka_group,
            enable_auto_commit=False,
        )
        numbers = consumer.partitions_for_topic(settings.events_topic)
        if not numbers:
            status.error = f"topic {settings.events_topic} does not exist"
            return status
        tps = [TopicPartition(settings.events_topic, p) for p in sorted(numbers)]
        lineage = consumer.partitions_for_topic(settings.openlineage_topic) or set()
        tps += [TopicPartition(settings.openlineage_topic, p) for p in sorted(lineage)]
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        for tp in tps:
            committed = consumer.committed(tp)
            end = int(ends.get(tp, 0))
            base = committed if committed is not None else int(starts.get(tp, 0))
            status.partitions.append(PartitionLag(tp.topic, tp.partition, committed, end, max(0, end - base)))
        status.total_lag = sum(p.lag for p in status.partitions)
    except (KafkaError, MetatrailError, OSError) as exc:
        status.error = f"{type(exc).__name__}: {exc}"
    finally:
        if consumer is not None:
            with contextlib.suppress(Exception):
                consumer.close(autocommit=False)
    return status


def store_status(engine: Engine) -> StoreStatus:
    """The newest applied event and the dead-letter counts."""
    status = StoreStatus()
    try:
        with session_scope(engine, write=False) as session:
            row = session.execute(
                select(AppliedEventRow.event_id, AppliedEventRow.kind, AppliedEventRow.applied_at)
                .order_by(AppliedEventRow.applied_at.desc())
                .limit(1)
            ).first()
        if row is not None:
            status.last_event_id, status.last_event_kind, status.last_applied_at = row
        status.dead_letters, status.dead_letters_pending = dead_letter_counts(engine)
    except MetatrailError as exc:
        status.error = str(exc)
    return status


def spool_status(path: Path) -> SpoolStatus:
    """Events waiting in the producer spool at ``path`` (read-only; the producer's relay
    may be running). Counts rows of its ``spool`` table and the journal bytes not yet
    moved into it."""
    path = Path(path).absolute()
    status = SpoolStatus(path=str(path), exists=path.exists())
    if not status.exists:
        return status
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            status.events = int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])
            offsets = dict(conn.execute("SELECT file, offset FROM journal_offsets").fetchall())
        finally:
            conn.close()
    except sqlite3.Error as exc:
        status.error = f"cannot read the spool: {exc}"
        return status
    status.journal_bytes_pending = _journal_backlog(path.with_name(path.name + ".journal"), offsets)
    return status


def _journal_backlog(journal_dir: Path, offsets: dict[str, int]) -> int:
    if not journal_dir.is_dir():
        return 0
    pending = 0
    for file in journal_dir.iterdir():
        if not file.is_file():
            continue
        done = offsets.get(str(file), offsets.get(file.name, 0))
        with contextlib.suppress(OSError):
            pending += max(0, file.stat().st_size - int(done))
    return pending
