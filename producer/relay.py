"""The relay: moves spooled events to the transport in batches, in a background thread.

Each cycle (see ``metatrail.producer.spool`` for the two paths): every few seconds recover the
journals and rows of processes that are gone; then, if this process has no rows waiting
in the outbox, send up to ``relay_batch_size`` journal frames directly (one attempt);
otherwise, or if that attempt failed, move the journal into the outbox, apply the size
bound, and send up to ``relay_batch_size`` rows, deleting them once delivered. Sending uses ONE tenacity policy:
errors whose ``retriable`` flag is set are retried with exponential back-off (jittered,
capped at ``RETRY_MAX_WAIT_S``) for up to ``RETRY_CYCLE_S``, then in the next cycle; any
other error ends the cycle, is logged, and the batch is tried again after ``ERROR_PAUSE_S``
(or at the next ``flush``). Events are never dropped for a delivery error.

An event the transport refuses for what it is (``RejectedEventsError``: e.g. a Kafka broker
refusing it as too large) cannot be delivered by trying again: it is moved to the spool's
dead-letter file with its reason (``metatrail.producer.setaside``), with a warning, and the
queue moves on. ``set_aside`` counts them.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
    wait_exponential,
)
from tenacity.stop import stop_base

from metatrail.producer import setaside
from metatrail.producer.spool import Spool
from metatrail.producer.transports.base import RejectedEventsError, SpooledEvent, Transport
from metatrail.schemas.ids import jitter

log = logging.getLogger("metatrail.producer")

RETRY_MAX_WAIT_S = 2.0
#: A batch is retried for this long within one cycle; then the cycle ends (the error is
#: logged), and the next one moves new journal frames into the outbox and re-applies the
#: size bound before trying again.
RETRY_CYCLE_S = 15.0
ERROR_PAUSE_S = 5.0
ORPHAN_SCAN_S = 2.0


def _retriable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retriable", False))


_EXPONENTIAL = wait_exponential(multiplier=0.05, max=RETRY_MAX_WAIT_S)


def backoff_s(state: RetryCallState) -> float:
    """The wait before a retry: tenacity's ``wait_random_exponential`` (full jitter), drawn
    from the ids' private generator, never the user's ``random`` state."""
    return jitter(0.0, _EXPONENTIAL(state))


class _StopWhen(stop_base):
    def __init__(self, predicate: Any) -> None:
        self.predicate = predicate

    def __call__(self, retry_state: Any) -> bool:
        return bool(self.predicate())


class Relay:
    """Delivers a spool through a transport; ``start`` for the background thread, or
    ``drain`` to deliver in the caller's thread (``metatrail flush``)."""

    def __init__(
        self, spool: Spool, transport: Transport, *, batch_size: int, interval_s: float
    ) -> None:
        self.spool = spool
        self.transport = transport
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.delivered = 0
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._cond = threading.Condition()
        self._cycles_started = 0
        self._last_idle_cycle = -1
        self._next_orphan_scan = 0.0
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None
        self.last_error: BaseException | None = None
        #: Events refused by the transport and moved to the dead-letter file, and the last
        #: refusal's reason.
        self.set_aside = 0
        self.set_aside_reason = ""

    @property
    def dead_letter_path(self) -> Path:
        """Where refused events are set aside."""
        return setaside.dead_letter_path(self.spool.path)

    # --- one cycle ----------------------------------------------------------------------
    def cycle(self) -> int:
        """Ingest, bound, send one batch. Returns events delivered (0 = nothing to do).
        Raises the transport's error when a batch could not be delivered."""
        with self._cond:
            self._cycles_started += 1
            index = self._cycles_started
        now = time.monotonic()
        if now >= self._next_orphan_scan:
            self._next_orphan_scan = now + ORPHAN_SCAN_S
            self.spool.recover_orphans()
        sent = self._direct() if not self.spool.own_rows() else None
        if sent is None:
            self.spool.ingest()
            self.spool.enforce_bound()
            batch = self.spool.read_batch(self.batch_size)
            refused = 0
            if batch:
                try:
                    self._send(batch)
                except RejectedEventsError as exc:
                    refused = self._set_aside(exc)
                self.spool.delete(batch)
                self.delivered += len(batch) - refused
            sent = len(batch)
        idle = sent == 0 and self.spool.pending_journal_bytes() <= 0
        with self._cond:
            if idle:
                self._last_idle_cycle = index
            self._cond.notify_all()
        return sent

    def _direct(self) -> int | None:
        """Healthy path: send journal frames as they are (one attempt). On failure they go
        into the table and ``None`` says "use the table path" (which retries)."""
        found = self.spool.read_journal(self.batch_size)
        if found is None:  # damage among the frames: the table path sets it aside
            self.spool.ingest()
            return None
        batch, offset = found
        if not batch:
            return 0
        refused = 0
        try:
            self.transport.send(batch)
        except RejectedEventsError as exc:
            try:
                refused = self._set_aside(exc)
            except Exception:
                self.spool.ingest()
                raise
        except Exception:
            self.spool.ingest()
            return None
        self.spool.journal_delivered(offset)
        self.delivered += len(batch) - refused
        self.last_error = None
        return len(batch)

    def _set_aside(self, exc: RejectedEventsError) -> int:
        """Move the refused events of ``exc`` to the dead-letter file (durably) and warn;
        returns how many. Raises ``OSError`` when the file cannot be written (the events
        then stay in the spool)."""
        where = setaside.save_rejected(self.spool.path, exc.rejected)
        self.set_aside += len(exc.rejected)
        self.set_aside_reason = exc.rejected[-1][1]
        for event, reason in exc.rejected:
            log.warning(
                "metatrail: event %s (%d bytes) cannot be delivered: %s; set aside in %s, "
                "the events behind it go on",
                event.event_id,
                len(event.payload),
                reason,
                where,
            )
        return len(exc.rejected)

    def _send(self, batch: list[SpooledEvent]) -> None:
        for attempt in Retrying(
            retry=retry_if_exception(_retriable),
            wait=backoff_s,
            stop=stop_any(_StopWhen(self._should_give_up), stop_after_delay(RETRY_CYCLE_S)),
            sleep=self._sleep,
            reraise=True,
        ):
            with attempt:
                self.transport.send(batch)
        self.last_error = None

    def _should_give_up(self) -> bool:
        return self._stop.is_set() or (
            self._deadline is not None and time.monotonic() >= self._deadline
        )

    def _sleep(self, seconds: float) -> None:
        if self._deadline is not None:
            seconds = max(0.0, min(seconds, self._deadline - time.monotonic()))
        self._kick.wait(seconds)
        self._kick.clear()

    # --- background thread ----------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="metatrail-relay", daemon=True)
            self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.cycle()
            except Exception as exc:
                self._report(exc)
                self._kick.wait(ERROR_PAUSE_S if not _retriable(exc) else self.interval_s)
                self._kick.clear()
                continue
            if sent < self.batch_size:  # caught up: let events accumulate into a batch
                self._kick.wait(self.interval_s)
                self._kick.clear()

    def _report(self, exc: BaseException) -> None:
        first = self.last_error is None or type(self.last_error) is not type(exc)
        self.last_error = exc
        level = logging.ERROR if not _retriable(exc) else logging.WARNING
        if first:
            log.log(
                level,
                "metatrail: cannot deliver spooled events (they stay in %s): %s",
                self.spool.path,
                exc,
            )

    def wait_idle(self, timeout_s: float) -> bool:
        """Block until a cycle that started after this call found nothing left to send."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            target = self._cycles_started + 1
        self._next_orphan_scan = 0.0
        self._kick.set()
        with self._cond:
            while self._last_idle_cycle < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.running:
                    return self._last_idle_cycle >= target
                self._cond.wait(min(remaining, 0.05))
                self._kick.set()
        return True

    def stop(self, timeout_s: float = 1.0) -> None:
        self._stop.set()
        self._kick.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    # --- in the caller's thread ------------------------------------------------------------
    def drain(self, timeout_s: float) -> bool:
        """Deliver everything (including dead processes' journals) or give up after
        ``timeout_s``. Returns whether the spool is empty. Raises nothing; errors are logged."""
        self._deadline = time.monotonic() + timeout_s
        self._next_orphan_scan = 0.0
        try:
            while time.monotonic() < self._deadline:
                try:
                    if self.cycle() == 0 and self.spool.pending() == 0:
                        return True
                except Exception as exc:
                    self._report(exc)
                    if not _retriable(exc):
                        return False
            return self.spool.pending() == 0
        finally:
            self._deadline = None
