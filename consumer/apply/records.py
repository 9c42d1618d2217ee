"""Apply raw input (bytes from Kafka, lines of a file): validate, apply, dead-letter.

Design rule 5: bad input never stops the line. Input that fails validation is written to
the dead-letter table in the same transaction as the valid events of its batch. If the
store rejects a batch for a reason that is not transient, the batch is split in halves
until the event it cannot take is isolated and dead-lettered with the store's reason.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from metatrail.consumer.apply.applier import apply_in_session
from metatrail.consumer.apply.bulk import write
from metatrail.consumer.apply.report import ApplyReport, DeadLetter, RawRecord
from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.models import DeadLetterRow
from metatrail.schemas.errors import EventValidationError, StoreError
from metatrail.schemas.events import Event
from metatrail.schemas.parse import MAX_EVENT_BYTES, parse_event

log = logging.getLogger("metatrail.apply")

#: Bytes of a dead letter's payload kept in the table (the DLQ topic keeps all of it).
MAX_STORED_PAYLOAD = 4 * 1024 * 1024


def apply_records(
    engine: Engine, records: Sequence[RawRecord], *, max_event_bytes: int = MAX_EVENT_BYTES
) -> ApplyReport:
    """Validate and apply raw records; invalid ones become dead letters.

    One transaction for the whole batch unless the store rejects it (then halves, each in
    its own transaction). Raises ``TransientStoreError`` when a retry of the whole call
    may succeed; otherwise never raises for bad input.
    """
    valid: list[tuple[RawRecord, Event]] = []
    invalid: list[tuple[RawRecord, DeadLetter]] = []
    for record in records:
        try:
            valid.append((record, parse_event(record.payload, max_bytes=max_event_bytes)))
        except EventValidationError as exc:
            invalid.append((record, _dead_letter(record, str(exc))))
    return _apply_split(engine, valid, invalid)


def _apply_split(
    engine: Engine,
    valid: list[tuple[RawRecord, Event]],
    invalid: list[tuple[RawRecord, DeadLetter]],
) -> ApplyReport:
    try:
        with session_scope(engine) as session:
            report = apply_in_session(session, [event for _, event in valid])
            write_dead_letters(session, invalid)
    except (StoreError, ValueError, TypeError, OverflowError) as exc:
        # ValueError & co.: the driver could not bind a value (e.g. NUL in PostgreSQL text).
        if isinstance(exc, StoreError) and exc.retriable:
            raise
        if not valid:  # nothing left to isolate: the store cannot even take the dead letters
            raise
        if len(valid) <= 1:
            rejected = [(r, _dead_letter(r, f"the store rejected the event: {exc}")) for r, _ in valid]
            log.error("dead-lettering %d event(s) the store rejected: %s", len(rejected), exc)
            return _apply_split(engine, [], invalid + rejected)
        middle = len(valid) // 2
        report = _apply_split(engine, valid[:middle], invalid)
        report.merge(_apply_split(engine, valid[middle:], []))
        return report
    report.dead_lettered += len(invalid)
    report.dead_letters.extend(dl for _, dl in invalid)
    return report


def write_dead_letters(session: Session, items: Sequence[tuple[RawRecord, DeadLetter]]) -> None:
    """Store dead letters; one row per source position, however often it is redelivered."""
    now = datetime.now(timezone.utc)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for record, letter in items:
        if record.source_key in seen:
            continue
        seen.add(record.source_key)
        payload = bytes(record.payload)
        rows.append(
            {
                "source_key": record.source_key[:255],
                "reason": letter.reason,
                "payload": payload[:MAX_STORED_PAYLOAD],
                "payload_bytes": len(payload),
                "truncated": len(payload) > MAX_STORED_PAYLOAD,
                "event_id": letter.event_id,
                "kind": letter.kind,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "created_at": now,
                "replayed_at": None,
                "replay_result": None,
            }
        )
    write(session, DeadLetterRow.__table__, rows, "ignore")


def _dead_letter(record: RawRecord, reason: str) -> DeadLetter:
    event_id, kind = _peek(record.payload)
    return DeadLetter(source_key=record.source_key, reason=reason, event_id=event_id, kind=kind)


def _peek(payload: bytes) -> tuple[str | None, str | None]:
    """Best-effort event id and kind of an invalid payload, for the dead-letter row."""
    if len(payload) > MAX_EVENT_BYTES:
        return None, None
    try:
        data = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    event_id, kind = data.get("event_id"), data.get("kind")
    return (
        event_id if isinstance(event_id, str) and len(event_id) <= 36 else None,
        kind if isinstance(kind, str) and len(kind) <= 64 else None,
    )
