"""The trigger relay: outbox rows -> ``TriggerRequested`` events on the triggers topic.

Each pass (``relay_once``) first promotes the pending input sets of ``latest``-policy
steps whose previous trigger is no longer in flight, then publishes unsent outbox rows
(oldest first) and marks them sent. Publishing happens before marking, so a crash in
between republishes the rows on the next pass: harmless, because the request's event id
is derived from (trigger id, attempt) and a worker claims each (trigger, attempt) once.

``RelayThread`` runs passes in the background, every ``interval_s`` or at once when
``notify()`` is called (the consume loop calls it after each committed batch).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta, timezone
from typing import Protocol

from sqlalchemy import Engine, and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.models import (
    ExecutionRow,
    StepPendingRow,
    StepRow,
    TriggerClaimRow,
    TriggerOutboxRow,
)
from metatrail.consumer.triggers.sql import insert_ignore
from metatrail.schemas.errors import MetatrailError
from metatrail.schemas.events import TriggerRequested
from metatrail.schemas.ids import derived_id
from metatrail.schemas.settings import Settings

log = logging.getLogger(__name__)

#: A sent trigger with no finished execution stops blocking its ``latest`` step after this.
DEFAULT_IN_FLIGHT_LEASE_S = 600.0


class TriggerPublisher(Protocol):
    """Where trigger requests go (Kafka topic, in-process queue)."""

    def publish(self, requests: Sequence[TriggerRequested]) -> None:
        """Deliver durably before returning; raise a ``TransportError`` on failure."""
        ...


def request_event(trigger: str, step: str, step_name: str, inputs: dict[str, str], attempt: int = 0) -> TriggerRequested:
    """The request for one attempt of a trigger. Its event id is derived from (trigger,
    attempt), so a republished request is recognisably the same fact."""
    return TriggerRequested(
        event_id=derived_id("trigger.requested", trigger, attempt),
        trigger_id=uuid.UUID(trigger),
        step_id=uuid.UUID(step),
        step_name=step_name,
        inputs={k: uuid.UUID(v) for k, v in inputs.items()},
        attempt=attempt,
    )


def _in_flight(session: Session, step_id: str, since: datetime) -> bool:
    finished = or_(
        exists().where(ExecutionRow.trigger_id == TriggerOutboxRow.trigger_id, ExecutionRow.state_rank >= 2),
        exists().where(
            TriggerClaimRow.trigger_id == TriggerOutboxRow.trigger_id, TriggerClaimRow.finished_at.is_not(None)
        ),
    )
    query = select(TriggerOutboxRow.trigger_id).where(
        TriggerOutboxRow.step_id == step_id,
        or_(
            TriggerOutboxRow.sent_at.is_(None),
            and_(TriggerOutboxRow.sent_at >= since, ~finished),
        ),
    )
    return session.scalars(query.limit(1)).first() is not None


def promote_pending(session: Session, *, in_flight_lease_s: float = DEFAULT_IN_FLIGHT_LEASE_S) -> int:
    """Turn each ``latest`` step's pending input set into an outbox row when the step has
    no trigger in flight (unsent, or sent within the lease with neither a finished
    execution nor a worker's finished claim).
    Returns how many rows were promoted. A newer pending set written concurrently stays."""
    now = datetime.now(timezone.utc)
    since = now - timedelta(seconds=in_flight_lease_s)
    promoted = 0
    for pending in list(session.scalars(select(StepPendingRow).order_by(StepPendingRow.step_id))):
        if _in_flight(session, pending.step_id, since):
            continue
        step = session.get(StepRow, pending.step_id)
        if step is not None:
            promoted += insert_ignore(
                session,
                TriggerOutboxRow.__table__,  # type: ignore[arg-type]
                {
                    "trigger_id": pending.trigger_id,
                    "step_id": pending.step_id,
                    "step_name": step.name,
                    "inputs": dict(pending.inputs),
                    "created_at": now,
                    "sent_at": None,
                },
            )
        session.execute(
            delete(StepPendingRow).where(
                StepPendingRow.step_id == pending.step_id,
                StepPendingRow.trigger_id == pending.trigger_id,
            )
        )
    return promoted


def fetch_unsent(
    engine: Engine, limit: int = 500, step_ids: Collection[str] | None = None
) -> list[TriggerRequested]:
    """Unsent outbox rows (of ``step_ids`` only, when given) as requests, oldest first."""
    query = select(TriggerOutboxRow).where(TriggerOutboxRow.sent_at.is_(None))
    if step_ids is not None:
        query = query.where(TriggerOutboxRow.step_id.in_(sorted(step_ids)))
    with session_scope(engine, write=False) as session:
        rows = session.scalars(
            query
            .order_by(TriggerOutboxRow.created_at, TriggerOutboxRow.trigger_id)
            .limit(limit)
        )
        return [request_event(r.trigger_id, r.step_id, r.step_name, dict(r.inputs)) for r in rows]


def mark_sent(engine: Engine, trigger_ids: Sequence[str]) -> int:
    """Mark these outbox rows sent (those not marked already). Returns rows changed."""
    if not trigger_ids:
        return 0
    with session_scope(engine) as session:
        result = session.execute(
            update(TriggerOutboxRow)
            .where(TriggerOutboxRow.trigger_id.in_(list(trigger_ids)), TriggerOutboxRow.sent_at.is_(None))
            .values(sent_at=datetime.now(timezone.utc))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]


def relay_once(
    engine: Engine,
    publisher: TriggerPublisher,
    *,
    batch_size: int = 500,
    in_flight_lease_s: float = DEFAULT_IN_FLIGHT_LEASE_S,
    step_ids: Collection[str] | None = None,
) -> int:
    """One pass: promote pending ``latest`` sets, publish unsent rows, mark them sent.

    Blocking. Returns how many requests were published. Raises ``StoreError`` or the
    publisher's ``TransportError``; rows published but not marked are published again by
    the next pass. ``step_ids`` limits the pass to those steps' rows (an embedded worker
    takes only the rows of the steps it runs).
    """
    with session_scope(engine) as session:
        promote_pending(session, in_flight_lease_s=in_flight_lease_s)
    total = 0
    while True:
        requests = fetch_unsent(engine, batch_size, step_ids)
        if not requests:
            return total
        publisher.publish(requests)
        mark_sent(engine, [str(r.trigger_id) for r in requests])
        total += len(requests)
        if len(requests) < batch_size:
            return total


class RelayThread(threading.Thread):
    """Relay passes in the background until ``stop()``; errors are logged and retried on
    the next pass (every ``interval_s``, or at once after ``notify()``)."""

    def __init__(self, engine: Engine, publisher: TriggerPublisher, *, interval_s: float = 0.5) -> None:
        super().__init__(name="metatrail-trigger-relay", daemon=True)
        self._engine = engine
        self._publisher = publisher
        self._interval_s = interval_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._on_stop: list[Callable[[], None]] = []
        self.published = 0

    def notify(self) -> None:
        """Ask for a pass now (e.g. a batch that may have written triggers committed)."""
        self._wake.set()

    def on_batch(self, *_: object) -> None:
        """``ConsumeLoop(on_batch=...)`` hook: a batch committed, run a pass now."""
        self._wake.set()

    def __enter__(self) -> RelayThread:
        if not self.is_alive():
            self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop after the current pass; waits up to ``timeout_s``."""
        self._stopping.set()
        self._wake.set()
        if self.is_alive():
            self.join(timeout_s)
        for close in self._on_stop:
            close()
        self._on_stop.clear()

    def run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._interval_s)
            self._wake.clear()
            try:
                self.published += relay_once(self._engine, self._publisher)
            except MetatrailError as exc:
                log.warning("trigger relay pass failed (retried next pass): %s", exc)
            except Exception:  # never let the relay thread die silently
                log.exception("trigger relay pass failed (retried next pass)")


def kafka_relay(settings: Settings, engine: Engine | None = None, *, interval_s: float = 0.5) -> RelayThread:
    """A (not yet started) relay from the store at ``settings.store_url`` to the triggers
    topic. Use it as a context manager, or ``start()``/``stop()``; ``stop`` closes what it
    opened. Raises ``TransportError`` when the broker cannot be reached."""
    from metatrail.consumer.store.engine import open_engine
    from metatrail.consumer.triggers.kafka import KafkaTriggerPublisher, ensure_triggers_topic

    ensure_triggers_topic(settings)
    own_engine = engine is None
    eng = engine if engine is not None else open_engine(settings.store_url)
    publisher = KafkaTriggerPublisher(settings)
    relay = RelayThread(eng, publisher, interval_s=interval_s)
    relay._on_stop.append(publisher.close)
    if own_engine:
        relay._on_stop.append(eng.dispose)
    return relay
