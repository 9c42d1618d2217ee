"""Running one trigger request: dedupe, claim, resolve inputs, run, decide on a retry.

Exactly-once in effect (design rule 7) on the worker side:

1. An execution already recorded for the trigger id (COMPLETE, RUNNING or CACHED; for a
   retry attempt only COMPLETE or CACHED, since the failed attempt may still read RUNNING)
   means the work is done or under way: the request is skipped and the log says
   ``trigger <id> already has execution <id>; skipping``.
2. Otherwise the worker claims (trigger id, attempt) with an insert-or-ignore on
   ``mt_trigger_claims``. Only the worker whose insert wins runs the step; a second worker,
   a redelivered message or a republished request loses and skips. This holds even before
   the winner's execution events reach the store.

Retries (bounded): a step that raises is recorded FAILED by ``@track``. When the step's
``max_retries`` allows (``attempt < max_retries``), the outcome carries a new request for
``attempt + 1`` (same trigger id); whoever receives it waits ``retry_delay_s(attempt)``
after the request was made before running it: 1 s, 2 s, 4 s ... capped at 60 s.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from sqlalchemy import Engine, update

from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.models import TriggerClaimRow
from metatrail.consumer.triggers.relay import request_event
from metatrail.consumer.triggers.sql import insert_ignore
from metatrail.consumer.worker.lookup import execution_for_trigger, load_artifacts
from metatrail.schemas.errors import MetatrailError
from metatrail.schemas.events import TriggerRequested

if TYPE_CHECKING:
    from metatrail.producer.steps import Step

log = logging.getLogger(__name__)

#: First retry delay and its cap (seconds); the delay doubles with each attempt.
RETRY_BASE_S = 1.0
RETRY_MAX_S = 60.0

Status = Literal["ran", "failed", "skipped", "unknown_step", "missing_inputs"]


def retry_delay_s(attempt: int, base_s: float = RETRY_BASE_S, max_s: float = RETRY_MAX_S) -> float:
    """How long after its request attempt ``attempt`` (>= 1) may start."""
    if attempt <= 0:
        return 0.0
    return float(min(max_s, base_s * 2 ** (attempt - 1)))


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Outcome:
    """What handling one request did; ``retry`` is the request to publish, if any."""

    status: Status
    trigger_id: str
    step_name: str
    attempt: int
    detail: str = ""
    retry: TriggerRequested | None = None
    claimed: bool = False


class TriggerRunner:
    """Runs trigger requests for a set of steps against a store. Thread-compatible (one
    runner per thread); blocking: ``handle`` returns when the step has returned."""

    def __init__(
        self,
        engine: Engine,
        steps: Iterable[Step],
        *,
        worker_id: str | None = None,
        retry_base_s: float = RETRY_BASE_S,
    ) -> None:
        self._engine = engine
        self._steps = {str(s.step_id): s for s in steps}
        self.worker_id = worker_id or default_worker_id()
        self.retry_base_s = retry_base_s

    @property
    def step_ids(self) -> set[str]:
        return set(self._steps)

    def _done_already(self, trigger: str, attempt: int) -> str | None:
        states = ("COMPLETE", "RUNNING", "CACHED") if attempt == 0 else ("COMPLETE", "CACHED")
        with session_scope(self._engine, write=False) as session:
            return execution_for_trigger(session, trigger, states)

    def _claim(self, trigger: str, attempt: int) -> bool:
        """Claim (trigger, attempt). True when this worker holds an unfinished claim on it
        (just inserted, or left by an earlier try of this same worker that failed on a
        transient store error), so retrying ``handle`` never loses the trigger."""
        row = {
            "trigger_id": trigger,
            "attempt": attempt,
            "worker": self.worker_id[:255],
            "claimed_at": datetime.now(timezone.utc),
        }
        with session_scope(self._engine) as session:
            if insert_ignore(session, TriggerClaimRow.__table__, row):  # type: ignore[arg-type]
                return True
            held = session.get(TriggerClaimRow, (trigger, attempt))
            return held is not None and held.worker == row["worker"] and held.finished_at is None

    def _finish(self, trigger: str, attempt: int, status: str) -> None:
        """Stamp the claim finished. Advisory (it ends a ``latest`` step's in-flight state
        early), so a store error here is logged, not raised: the step must not rerun."""
        try:
            with session_scope(self._engine) as session:
                session.execute(
                    update(TriggerClaimRow)
                    .where(TriggerClaimRow.trigger_id == trigger, TriggerClaimRow.attempt == attempt)
                    .values(finished_at=datetime.now(timezone.utc), outcome=status)
                )
        except MetatrailError as exc:
            log.warning("trigger %s: could not mark the claim finished: %s", trigger, exc)

    def handle(self, request: TriggerRequested) -> Outcome:
        """See :meth:`_handle`; also stamps the claim finished (when this worker won it)."""
        out = self._handle(request)
        if out.claimed:
            self._finish(out.trigger_id, out.attempt, out.status)
        return out

    def _handle(self, request: TriggerRequested) -> Outcome:
        """Run ``request`` unless it is done, claimed, or not ours. Never raises for the
        step's own exception (that is a FAILED execution); raises ``StoreError`` when the
        store cannot be read or written (the caller retries the message)."""
        trigger, attempt = str(request.trigger_id), request.attempt
        out = Outcome("skipped", trigger, request.step_name, attempt)
        step = self._steps.get(str(request.step_id))
        if step is None:
            out.status, out.detail = "unknown_step", f"step {request.step_name!r} is not served here"
            log.debug("trigger %s: %s; skipping", trigger, out.detail)
            return out
        existing = self._done_already(trigger, attempt)
        if existing is not None:
            out.detail = f"trigger {trigger} already has execution {existing}; skipping"
            log.info(out.detail)
            return out
        if not self._claim(trigger, attempt):
            out.detail = f"trigger {trigger} attempt {attempt} already claimed; skipping"
            log.info(out.detail)
            return out
        out.claimed = True
        ids = {slot: str(aid) for slot, aid in request.inputs.items()}
        with session_scope(self._engine, write=False) as session:
            found = load_artifacts(session, list(ids.values()))
        missing = sorted(slot for slot, aid in ids.items() if aid not in found)
        if missing:
            out.status, out.detail = "missing_inputs", f"inputs {missing} are not in the store"
            log.error("trigger %s of step %s: %s", trigger, request.step_name, out.detail)
            return out
        log.info("trigger %s: running step %s (attempt %d)", trigger, request.step_name, attempt)
        try:
            step.run_triggered({slot: found[aid] for slot, aid in ids.items()}, request.trigger_id, attempt)
        except Exception as exc:  # the step's own failure: recorded FAILED by @track
            out.status, out.detail = "failed", f"{type(exc).__name__}: {exc}"
            if attempt < step.max_retries:
                out.retry = request_event(trigger, str(request.step_id), request.step_name, ids, attempt + 1)
                log.warning(
                    "trigger %s: step %s failed (%s); retry %d of %d in %.1f s",
                    trigger, request.step_name, out.detail, attempt + 1, step.max_retries,
                    retry_delay_s(attempt + 1, self.retry_base_s),
                )
            else:
                log.error("trigger %s: step %s failed (%s); no retries left", trigger, request.step_name, out.detail)
            return out
        out.status = "ran"
        return out

    def due_in_s(self, request: TriggerRequested) -> float:
        """Seconds until ``request`` may run (0 for first attempts)."""
        delay = retry_delay_s(request.attempt, self.retry_base_s)
        if delay <= 0:
            return 0.0
        age = (datetime.now(timezone.utc) - request.occurred_at).total_seconds()
        return max(0.0, delay - age)
