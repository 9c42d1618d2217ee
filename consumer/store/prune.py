"""Bounded growth of the store's delivery bookkeeping: ``prune`` forgets old rows that
exist only to make delivery idempotent. Lineage, properties, metrics and dead letters are
user data and are never touched.

What is forgotten, and why it is safe:

``mt_applied_events`` (rule 2), rows applied before the cut-off.
    An applied id only matters while the same event can arrive again. Redelivery comes
    from Kafka offsets not yet committed (the message is still on the broker) and from
    the producer's spool (an event is spooled before it reaches the broker, or the store
    in embedded mode). An event applied before the cut-off was appended to the broker and
    left the spool before that, so with a cut-off longer than the broker's retention and
    the spool's life it cannot be redelivered. Should it come back anyway (a re-ingested
    file, a replayed dead letter), re-applying it changes no row: node fields, execution
    states and properties merge last-writer-wins on (occurred_at, event_id) and the
    stored stamp is never smaller than the event's own; edges, memberships and parents
    are sets; times are min/max; metric samples are keyed by (event_id, seq) and written
    insert-or-ignore; the artifact states it sets are already stored, so no trigger is
    evaluated again. Only its applied row comes back.

``mt_trigger_claims``, claims finished before the cut-off, of triggers with an execution.
    A claim stops a second worker running (trigger, attempt). A request for it reaches a
    worker again only from the triggers topic (within the broker's retention) or when the
    relay publishes the trigger's outbox row, which it does once per row; the outbox row of
    a trigger with an execution is kept (below), so a second request is a no-op there.
    Open claims (``finished_at`` NULL) are never forgotten.

``mt_trigger_outbox``, rows published before the cut-off that nothing else reads.
    The outbox is also the map from a triggered execution to its step (a step never
    triggers on its own outputs) and an ``all_new`` step's reference to the inputs of its
    last trigger. So a row is kept when an execution carries its trigger id, when a worker
    claimed it (a new request must not run it again), or when it is its step's newest
    row; unpublished rows are never forgotten. What goes: triggers that never ran
    anywhere (no worker served the step), whose second request could only be a first run.

Rows go in batches (``batch_size`` per transaction), so no single DELETE holds locks on a
large table for long on PostgreSQL or MariaDB; concurrent applies and workers go on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, Engine, Table, and_, delete, exists, func, select, tuple_
from sqlalchemy.orm import aliased

from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.models import AppliedEventRow, ExecutionRow, TriggerClaimRow, TriggerOutboxRow

#: The cut-off when none is given: far longer than a broker's usual retention (7 days).
DEFAULT_OLDER_THAN = timedelta(days=30)
#: Shorter cut-offs are refused: they would race the broker's retention and the spool.
MIN_OLDER_THAN = timedelta(days=1)
#: Rows deleted per transaction.
DEFAULT_BATCH_SIZE = 1000

#: The tables pruned, in this order.
PRUNED_TABLES = ("mt_applied_events", "mt_trigger_claims", "mt_trigger_outbox")


@dataclass(frozen=True)
class PruneReport:
    """What a prune deleted (or, in a dry run, would delete): table -> rows."""

    cutoff: datetime
    dry_run: bool
    deleted: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Target:
    table: Table
    keys: tuple[str, ...]
    order_by: str
    #: Rows that may go. ``kept`` adds conditions that only read other rows of the same
    #: table (MariaDB refuses them in a DELETE); they cannot turn false once true, since
    #: prune is the only thing that deletes those rows.
    prunable: Callable[[datetime], ColumnElement[bool]]
    kept: Callable[[], ColumnElement[bool] | None] = lambda: None


def _applied_events(cutoff: datetime) -> ColumnElement[bool]:
    return AppliedEventRow.applied_at < cutoff


def _claims(cutoff: datetime) -> ColumnElement[bool]:
    return and_(
        TriggerClaimRow.finished_at.is_not(None),
        TriggerClaimRow.finished_at < cutoff,
        exists().where(ExecutionRow.trigger_id == TriggerClaimRow.trigger_id),
    )


def _outbox(cutoff: datetime) -> ColumnElement[bool]:
    return and_(
        TriggerOutboxRow.sent_at.is_not(None),
        TriggerOutboxRow.sent_at < cutoff,
        ~exists().where(ExecutionRow.trigger_id == TriggerOutboxRow.trigger_id),
        ~exists().where(TriggerClaimRow.trigger_id == TriggerOutboxRow.trigger_id),
    )


def _not_newest_of_step() -> ColumnElement[bool]:
    newer = aliased(TriggerOutboxRow)
    return exists().where(newer.step_id == TriggerOutboxRow.step_id, newer.created_at > TriggerOutboxRow.created_at)


_TARGETS = {
    "mt_applied_events": _Target(AppliedEventRow.__table__, ("event_id",), "applied_at", _applied_events),
    "mt_trigger_claims": _Target(TriggerClaimRow.__table__, ("trigger_id", "attempt"), "finished_at", _claims),
    "mt_trigger_outbox": _Target(TriggerOutboxRow.__table__, ("trigger_id",), "sent_at", _outbox, _not_newest_of_step),
}


def prune(
    engine: Engine,
    older_than: timedelta = DEFAULT_OLDER_THAN,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    now: datetime | None = None,
) -> PruneReport:
    """Delete the bookkeeping rows older than ``older_than`` that are safe to forget (see
    the module docstring). ``older_than`` must exceed the broker's retention and the
    spool's life; under ``MIN_OLDER_THAN`` raises ``ValueError``. Blocking; idempotent;
    safe beside running consumers and workers. A dry run only counts. Raises
    ``StoreError`` (``TransientStoreError`` when retrying may cure it); batches already
    committed stay deleted."""
    if older_than < MIN_OLDER_THAN:
        raise ValueError(f"refusing to prune rows younger than {MIN_OLDER_THAN.days} day: got {older_than}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    cutoff = (now or datetime.now(timezone.utc)) - older_than
    deleted: dict[str, int] = {}
    for name in PRUNED_TABLES:
        target = _TARGETS[name]
        deleted[name] = _count(engine, target, cutoff) if dry_run else _delete(engine, target, cutoff, batch_size)
    return PruneReport(cutoff=cutoff, dry_run=dry_run, deleted=deleted)


def _select_condition(target: _Target, cutoff: datetime) -> ColumnElement[bool]:
    kept = target.kept()
    return target.prunable(cutoff) if kept is None else and_(target.prunable(cutoff), kept)


def _count(engine: Engine, target: _Target, cutoff: datetime) -> int:
    with session_scope(engine, write=False) as session:
        query = select(func.count()).select_from(target.table).where(_select_condition(target, cutoff))
        return int(session.execute(query).scalar_one())


def _delete(engine: Engine, target: _Target, cutoff: datetime, batch_size: int) -> int:
    """Select a batch of keys (by the indexed time column), delete them re-checking the
    condition, commit; until a batch finds nothing or deletes nothing."""
    columns = [target.table.c[k] for k in target.keys]
    total = 0
    while True:
        with session_scope(engine) as session:
            keys: list[Any] = list(
                session.execute(
                    select(*columns)
                    .where(_select_condition(target, cutoff))
                    .order_by(target.table.c[target.order_by])
                    .limit(batch_size)
                ).all()
            )
            if not keys:
                return total
            if len(columns) == 1:
                members = columns[0].in_([k[0] for k in keys])
            else:
                members = tuple_(*columns).in_([tuple(k) for k in keys])
            result = session.execute(delete(target.table).where(members, target.prunable(cutoff)))
            removed = int(result.rowcount)  # type: ignore[attr-defined]
        total += removed
        if removed == 0 or len(keys) < batch_size:
            return total

