"""Closing abandoned executions (``metatrail db reap``): calls killed mid-flight never send
their end, so they would stay RUNNING forever.

A stale execution (``metatrail.consumer.query.liveness``: its process is gone on this
host, or it has been silent longer than ``stale_after``) is closed by an event, like every
other write: an ``execution.recorded`` event with state FAILED and error type
``Abandoned``, applied through the one apply path. The event's id is derived from the
execution's, so reaping twice applies once; it is stamped just after the execution's last
event, so any later event of a producer that was alive after all (its real end) still
wins the state lattice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from uuid import UUID

from sqlalchemy import Engine

from metatrail.consumer.apply import apply_events, retry_transient
from metatrail.consumer.query.domain import Execution
from metatrail.consumer.query.store import Store
from metatrail.schemas.events import ErrorInfo, ExecutionRecorded
from metatrail.schemas.ids import derived_id
from metatrail.schemas.settings import Settings

#: The error type of a reaped execution.
ABANDONED = "Abandoned"
#: Executions read per page while looking for stale ones.
PAGE = 1000
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Reaped:
    """One stale execution, and the event that closes (or would close) it."""

    id: str
    type: str | None
    name: str | None
    reason: str
    started_at: datetime | None
    last_event_at: datetime | None
    event_id: str


@dataclass
class ReapReport:
    stale_after: timedelta
    dry_run: bool
    executions: list[Reaped] = field(default_factory=list)
    #: Events applied (0 in a dry run; fewer than found when another reap got there first).
    applied: int = 0


def reap(engine: Engine, settings: Settings, *, stale_after: timedelta, dry_run: bool = False) -> ReapReport:
    """Find the stale RUNNING executions and, unless ``dry_run``, close them as FAILED
    (``Abandoned``) through events. Idempotent; safe beside running consumers (the
    events are ordinary events: a later real end wins). Blocking. Raises ``StoreError``
    when the store fails for good (transient failures are retried with the one policy)."""
    report = ReapReport(stale_after=stale_after, dry_run=dry_run)
    store = Store(engine, stale_after=stale_after)
    stale: list[Execution] = []
    cursor: str | None = None
    while True:
        page = store.find("execution", "state = 'RUNNING'", limit=PAGE, cursor=cursor, include_retired=True)
        stale.extend(e for e in page.items if isinstance(e, Execution) and e.stale)
        cursor = page.next_cursor
        if cursor is None:
            break
    events = [abandoned_event(e) for e in stale]
    report.executions = [
        Reaped(e.id, e.type, e.name, e.stale or "", e.started_at, e.last_event_at, str(ev.event_id))
        for e, ev in zip(stale, events)
    ]
    if events and not dry_run:
        report.applied = retry_transient(lambda: apply_events(engine, events), settings).applied
    return report


def abandoned_event(execution: Execution) -> ExecutionRecorded:
    """The event closing a stale execution as FAILED, reason ``abandoned: <why>``."""
    last = execution.last_event_at or execution.updated_at or execution.started_at or datetime.now(timezone.utc)
    return ExecutionRecorded(
        event_id=derived_id("execution.abandoned", execution.id),
        execution_id=UUID(execution.id),
        occurred_at=last + _TICK,
        state="FAILED",
        ended_at=last,
        error=ErrorInfo(type=ABANDONED, message=f"abandoned: {execution.stale or 'stale'}"),
    )
