"""Apply raw input (bytes from Kafka, lines of a file): validate, apply, dead-letter.

Design rule 5: bad input never stops the line. Input that fails validation is written to
the dead-letter table in the same transaction as the valid events of its batch. If the
store refuses a value of the batch (``StoreRejectedError``: too long, out of range...; see
``metatrail.consumer.store.faults``), the batch is split in halves until the event it
cannot take is isolated and dead-lettered with the store's reason. A store that is unwell
(``TransientStoreError``) or broken (``StoreError``) fails the whole call instead: that is
never an event's fault, so nothing is dead-lettered for it.

A dead letter can always be written: its payload is stored as bytes, and its texts
(reason, source, event id, kind) are made storable on every backend first.

A record is decoded by its ``format``: ``metatrail`` is one of our events;
``openlineage`` is one OpenLineage event, which the mapping turns into several of ours
(``metatrail.consumer.openlineage.mapping``). Either way a record is applied, or
dead-lettered, as a whole.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from functools import partial
from typing import Any
from uuid import UUID

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from metatrail.consumer.apply.applier import apply_in_session
from metatrail.consumer.apply.bulk import write
from metatrail.consumer.apply.collector import call_paused
from metatrail.consumer.apply.report import ApplyReport, DeadLetter, RawRecord
from metatrail.consumer.apply.retry import retry_transient
from metatrail.consumer.openlineage.facets import DEFAULT_MAX_FACET_BYTES
from metatrail.consumer.openlineage.mapping import DEFAULT_MAX_EVENT_BYTES, decode_openlineage
from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.faults import Fault, classify
from metatrail.consumer.store.models import DeadLetterRow
from metatrail.schemas.errors import EventValidationError, StoreError, StoreRejectedError
from metatrail.schemas.events import EVENT_KINDS, Event
from metatrail.schemas.parse import MAX_EVENT_BYTES, parse_event, safe_text
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.apply")

#: Bytes of a dead letter's payload kept in the table (the DLQ topic keeps all of it).
MAX_STORED_PAYLOAD = 4 * 1024 * 1024
#: Characters of a dead letter's reason kept (in the table and the DLQ topic's header).
MAX_REASON_CHARS = 8_000
#: Width of the source key column.
MAX_SOURCE_KEY = 255
#: The record formats ``apply_records`` decodes.
FORMATS = ("metatrail", "openlineage")
#: Dead-letter ``kind`` of a rejected OpenLineage record (replay decodes it as such).
OPENLINEAGE_KIND = "openlineage"


#: How a batch's store work is run: called with the work (a whole transaction, redone
#: from scratch by each call), it returns the work's result, e.g. by retrying it.
Attempts = Callable[[Callable[[], ApplyReport]], ApplyReport]


def _once(work: Callable[[], ApplyReport]) -> ApplyReport:
    return work()


def apply_records(
    engine: Engine,
    records: Sequence[RawRecord],
    *,
    max_event_bytes: int = MAX_EVENT_BYTES,
    max_openlineage_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_facet_bytes: int = DEFAULT_MAX_FACET_BYTES,
    redact_words: tuple[str, ...] | None = None,
    attempts: Attempts = _once,
) -> ApplyReport:
    """Validate and apply raw records; invalid ones become dead letters.

    One transaction for the whole batch unless the store refuses a value (then halves,
    each in its own transaction). Raises ``TransientStoreError`` when the store is unwell
    and ``StoreError`` when it is broken; nothing of the call is then written, and nothing
    is dead-lettered. Never raises for bad input. The report counts our events (an
    OpenLineage record is several); ``dead_letters`` names the rejected records.

    ``attempts`` runs the store's part (e.g. ``partial(retry_transient, settings=...)``).
    The records are decoded once, before it: a retry after a transient failure (a
    concurrent applier inserted the same new node first) redoes the transaction, not the
    validation and OpenLineage mapping, which cost more than the transaction's own work.
    """
    return call_paused(_decode_and_apply, engine, records, max_event_bytes, max_openlineage_bytes, max_facet_bytes,
                       redact_words, attempts)


def _decode_and_apply(
    engine: Engine,
    records: Sequence[RawRecord],
    max_event_bytes: int,
    max_openlineage_bytes: int,
    max_facet_bytes: int,
    redact_words: tuple[str, ...] | None,
    attempts: Attempts,
) -> ApplyReport:
    valid, invalid = _decode(records, max_event_bytes, max_openlineage_bytes, max_facet_bytes, redact_words)
    return attempts(lambda: _apply_split(engine, valid, invalid))


def _decode(
    records: Sequence[RawRecord],
    max_event_bytes: int,
    max_openlineage_bytes: int,
    max_facet_bytes: int,
    redact_words: tuple[str, ...] | None,
) -> tuple[list[tuple[RawRecord, list[Event]]], list[tuple[RawRecord, DeadLetter]]]:
    """(valid records with their events, invalid records with their dead letters)."""
    valid: list[tuple[RawRecord, list[Event]]] = []
    invalid: list[tuple[RawRecord, DeadLetter]] = []
    for record in records:
        try:
            if record.format == "openlineage":
                events = decode_openlineage(record.payload, max_bytes=max_openlineage_bytes,
                                            max_facet_bytes=max_facet_bytes, redact_words=redact_words)
            elif record.format == "metatrail":
                events = [parse_event(record.payload, max_bytes=max_event_bytes)]
            else:
                raise EventValidationError(f"unknown record format {record.format!r} (known: {', '.join(FORMATS)})")
            valid.append((record, events))
        except EventValidationError as exc:
            invalid.append((record, _dead_letter(record, str(exc))))
    return valid, invalid


def record_options(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of ``apply_records`` that come from the settings: the
    limits, the redaction words and the store's retry policy."""
    return {
        "attempts": partial(retry_transient, settings=settings),
        "max_event_bytes": settings.kafka_max_message_bytes,
        "max_openlineage_bytes": settings.openlineage_max_event_bytes,
        "max_facet_bytes": settings.openlineage_max_facet_bytes,
        "redact_words": settings.redact_patterns,
    }


def _apply_split(
    engine: Engine,
    valid: list[tuple[RawRecord, list[Event]]],
    invalid: list[tuple[RawRecord, DeadLetter]],
) -> ApplyReport:
    try:
        with session_scope(engine) as session:
            report = apply_in_session(session, [event for _, events in valid for event in events])
            write_dead_letters(session, invalid)
    except Exception as exc:
        refused = _refusal(exc)
        if refused is None or not valid:  # not an event's fault (or no event left to blame)
            raise
        if len(valid) == 1:
            rejected = [(r, _dead_letter(r, f"the store rejected the event: {refused}")) for r, _ in valid]
            log.error("dead-lettering an event the store rejected: %s", rejected[0][1].reason)
            return _apply_split(engine, [], invalid + rejected)
        middle = len(valid) // 2
        report = _apply_split(engine, valid[:middle], invalid)
        report.merge(_apply_split(engine, valid[middle:], []))
        return report
    report.dead_lettered += len(invalid)
    report.dead_letters.extend(dl for _, dl in invalid)
    return report


def _refusal(exc: BaseException) -> str | None:
    """Why the store refused a value of the batch, or ``None`` when ``exc`` is not that
    (an unwell or broken store, a bug): only a refusal may isolate and dead-letter."""
    if isinstance(exc, StoreRejectedError):
        return str(exc)
    if isinstance(exc, StoreError):
        return None
    if classify(exc) is Fault.REJECTED:  # the driver could not even bind the value
        return f"{type(exc).__name__}: {exc}"
    return None


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
                "source_key": storable_key(record.source_key),
                "reason": safe_text(letter.reason, MAX_REASON_CHARS),
                "payload": payload[:MAX_STORED_PAYLOAD],
                "payload_bytes": len(payload),
                "truncated": len(payload) > MAX_STORED_PAYLOAD,
                "event_id": letter.event_id,
                "kind": letter.kind,
                "topic": None if record.topic is None else safe_text(record.topic, 255),
                "partition": record.partition,
                "offset": record.offset,
                "created_at": now,
                "replayed_at": None,
                "replay_result": None,
            }
        )
    write(session, DeadLetterRow.__table__, rows, "ignore")


def storable_key(source_key: str) -> str:
    """The source key as the unique column holds it: storable text of at most 255
    characters; a longer key keeps its head and a digest of the whole, so two long keys
    (two lines of a deeply nested file) never collide."""
    text = safe_text(source_key, len(source_key) * 6 + 3)  # escaped in full, not cut
    if len(text) <= MAX_SOURCE_KEY:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
    return f"{text[: MAX_SOURCE_KEY - 33]}~{digest}"


def _dead_letter(record: RawRecord, reason: str) -> DeadLetter:
    if record.format == "openlineage":
        return DeadLetter(source_key=record.source_key, reason=safe_text(reason, MAX_REASON_CHARS), kind=OPENLINEAGE_KIND)
    event_id, kind = _peek(record.payload)
    return DeadLetter(
        source_key=record.source_key, reason=safe_text(reason, MAX_REASON_CHARS), event_id=event_id, kind=kind
    )


def _peek(payload: bytes) -> tuple[str | None, str | None]:
    """Best-effort event id and kind of an invalid payload, for the dead-letter row: the
    id only when it is a UUID, the kind only when it is a known one."""
    if len(payload) > MAX_EVENT_BYTES:
        return None, None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep
        return None, None
    if not isinstance(data, dict):
        return None, None
    event_id, kind = data.get("event_id"), data.get("kind")
    try:
        event_id = str(UUID(event_id)) if isinstance(event_id, str) and len(event_id) <= 64 else None
    except ValueError:
        event_id = None
    return event_id, kind if kind in EVENT_KINDS else None
