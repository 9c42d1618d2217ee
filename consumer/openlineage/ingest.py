"""Apply OpenLineage events handed over in memory: what ``POST /api/v1/lineage`` and
``/api/v1/lineage/batch`` call (the route only parses the request and maps the report to
a status). One transaction for the batch, through the one apply path
(``apply_records``); an invalid event is dead-lettered with its reason and reported, the
others are applied.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine

from metatrail.consumer.apply import RawRecord, apply_records
from metatrail.consumer.apply.records import record_options
from metatrail.schemas.settings import Settings


@dataclass(frozen=True)
class EventOutcome:
    """What became of the ``index``-th event of a request."""

    index: int
    accepted: bool
    reason: str | None = None


@dataclass
class LineageReport:
    """Per-event outcomes, and how many of our events the accepted ones applied."""

    outcomes: list[EventOutcome] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0

    @property
    def accepted(self) -> int:
        return sum(o.accepted for o in self.outcomes)

    @property
    def rejected(self) -> list[EventOutcome]:
        return [o for o in self.outcomes if not o.accepted]

    def to_json(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "rejected": len(self.rejected),
            "applied": self.applied,
            "duplicates": self.duplicates,
            "errors": [{"index": o.index, "reason": o.reason} for o in self.rejected],
        }


def apply_openlineage(
    engine: Engine, events: Sequence[bytes | dict[str, Any]], settings: Settings, *, source: str = "http"
) -> LineageReport:
    """Validate, map and apply OpenLineage events (raw JSON bytes, or parsed objects).

    Blocking (one DB transaction, retried with the store's policy when the failure is
    transient). Idempotent: an event already applied is a duplicate. Raises
    ``StoreError`` when the store fails for good; never raises for bad input. A dead
    letter's source key is ``<source>:sha256:<digest of its bytes>``, so the same bad
    event sent twice is stored once.
    """
    records = []
    for item in events:
        payload = item if isinstance(item, bytes) else _dump(item)
        digest = hashlib.sha256(payload).hexdigest()
        records.append(RawRecord(payload=payload, source_key=f"{source}:sha256:{digest}", format="openlineage"))
    report = apply_records(engine, records, **record_options(settings))
    reasons = {letter.source_key: letter.reason for letter in report.dead_letters}
    outcomes = [
        EventOutcome(i, record.source_key not in reasons, reasons.get(record.source_key))
        for i, record in enumerate(records)
    ]
    return LineageReport(outcomes=outcomes, applied=report.applied, duplicates=report.duplicates)


def _dump(item: Any) -> bytes:
    """An already-parsed event back to bytes (a dead letter keeps bytes). Something JSON
    cannot hold is kept as its repr, so that it is dead-lettered with a reason."""
    try:
        return orjson.dumps(item)
    except TypeError:
        return repr(item).encode("utf-8", "replace")
