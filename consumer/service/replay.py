"""Listing and replaying dead letters (after the producer or the contract was fixed).

Replay re-parses a dead letter's stored payload and applies it. It is idempotent: a
dead letter whose event is in the store is marked ``replayed_at`` with result ``applied``
(or ``duplicate`` when the event had already arrived some other way) and is skipped by
later replays; one that still does not parse keeps ``replayed_at`` empty and records
why in ``replay_result``, so a later replay (after another fix) tries it again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, func, or_, select, update

from metatrail.consumer.apply import apply_events, retry_transient
from metatrail.consumer.apply.records import OPENLINEAGE_KIND
from metatrail.consumer.openlineage.mapping import decode_openlineage
from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.models import DeadLetterRow
from metatrail.schemas.errors import EventValidationError, NotFoundError
from metatrail.schemas.parse import parse_event, safe_text
from metatrail.schemas.settings import Settings

APPLIED = "applied"
DUPLICATE = "duplicate"
_DONE = (APPLIED, DUPLICATE)


@dataclass(frozen=True)
class DeadLetterInfo:
    """One dead letter as the CLI shows it (no payload bytes)."""

    id: int
    source_key: str
    reason: str
    payload_bytes: int
    truncated: bool
    event_id: str | None
    kind: str | None
    topic: str | None
    partition: int | None
    offset: int | None
    created_at: datetime
    replayed_at: datetime | None
    replay_result: str | None


@dataclass(frozen=True)
class ReplayOutcome:
    """What replaying one dead letter did: ``applied``, ``duplicate``, ``still invalid: ...``,
    ``skipped: ...``."""

    id: int
    source_key: str
    result: str

    @property
    def done(self) -> bool:
        return self.result in _DONE


def list_dead_letters(engine: Engine, *, limit: int = 50, pending_only: bool = False,
                      before_id: int | None = None) -> list[DeadLetterInfo]:
    """Newest dead letters first; ``pending_only`` leaves out those already replayed;
    ``before_id`` starts after (older than) that dead letter (paging)."""
    query = select(DeadLetterRow).order_by(DeadLetterRow.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(DeadLetterRow.id < before_id)
    if pending_only:
        query = query.where(DeadLetterRow.replayed_at.is_(None))
    with session_scope(engine, write=False) as session:
        return [_info(row) for row in session.scalars(query)]


def dead_letter_counts(engine: Engine) -> tuple[int, int]:
    """(all dead letters, those not yet replayed into the store)."""
    with session_scope(engine, write=False) as session:
        total = session.scalar(select(func.count()).select_from(DeadLetterRow)) or 0
        pending = session.scalar(
            select(func.count()).select_from(DeadLetterRow).where(DeadLetterRow.replayed_at.is_(None))
        ) or 0
    return int(total), int(pending)


def replay_dead_letters(
    engine: Engine, settings: Settings, ids: Sequence[int] | None = None
) -> list[ReplayOutcome]:
    """Replay the given dead letters (``None``: every one not yet in the store), oldest first.

    Raises ``NotFoundError`` for an id that does not exist, ``StoreError`` when the
    store fails for good (transient failures are retried with the one store policy).
    """
    query = select(DeadLetterRow.id).order_by(DeadLetterRow.id)
    if ids is not None:
        query = query.where(DeadLetterRow.id.in_(list(ids)))
    else:
        query = query.where(
            or_(DeadLetterRow.replay_result.is_(None), DeadLetterRow.replay_result.not_in(_DONE))
        )
    with session_scope(engine, write=False) as session:
        found = list(session.scalars(query))
    if ids is not None:
        missing = sorted(set(ids) - set(found))
        if missing:
            raise NotFoundError(f"no dead letter with id {', '.join(map(str, missing))}")
    return [_replay_one(engine, settings, letter_id) for letter_id in found]


def _replay_one(engine: Engine, settings: Settings, letter_id: int) -> ReplayOutcome:
    with session_scope(engine, write=False) as session:
        row = session.get(DeadLetterRow, letter_id)
        assert row is not None  # listed a moment ago; dead letters are never deleted
        source_key, payload, truncated = row.source_key, bytes(row.payload), row.truncated
        previous, kind = row.replay_result, row.kind
    if previous in _DONE:
        return ReplayOutcome(letter_id, source_key, previous)
    if truncated:
        return _record(engine, letter_id, source_key, "skipped: the stored payload is truncated", done=False)
    try:
        if kind == OPENLINEAGE_KIND:  # one OpenLineage event: several of ours
            events = decode_openlineage(payload, max_bytes=settings.openlineage_max_event_bytes,
                                        max_facet_bytes=settings.openlineage_max_facet_bytes,
                                        redact_words=settings.redact_patterns)
        else:
            events = [parse_event(payload, max_bytes=settings.kafka_max_message_bytes)]
    except EventValidationError as exc:
        return _record(engine, letter_id, source_key, f"still invalid: {exc}", done=False)
    report = retry_transient(lambda: apply_events(engine, events), settings)
    result = APPLIED if report.applied else DUPLICATE
    return _record(engine, letter_id, source_key, result, done=True)


def _record(engine: Engine, letter_id: int, source_key: str, result: str, *, done: bool) -> ReplayOutcome:
    values: dict[str, object] = {"replay_result": safe_text(result, 2000)}
    if done:
        values["replayed_at"] = datetime.now(UTC)
    with session_scope(engine) as session:
        session.execute(update(DeadLetterRow).where(DeadLetterRow.id == letter_id).values(**values))
    return ReplayOutcome(letter_id, source_key, result)


def _info(row: DeadLetterRow) -> DeadLetterInfo:
    return DeadLetterInfo(
        id=row.id,
        source_key=row.source_key,
        reason=row.reason,
        payload_bytes=row.payload_bytes,
        truncated=row.truncated,
        event_id=row.event_id,
        kind=row.kind,
        topic=row.topic,
        partition=row.partition,
        offset=row.offset,
        created_at=row.created_at,
        replayed_at=row.replayed_at,
        replay_result=row.replay_result,
    )
