"""Embedded orchestration: the whole loop in one process, no Kafka.

The producer's embedded transport applies events to the local store (evaluating triggers
in the same transaction); this worker takes the unsent outbox rows of its steps straight
from that store (marking them sent), runs them, and repeats until nothing is left::

    from metatrail.consumer.worker import run_embedded
    import my_pipeline.steps as steps
    ingest(...)                                   # a tracked call that writes a dataset
    report = run_embedded(steps, until_idle=True, timeout_s=60)
    print(report.ran, report.failed)

Requests are marked sent before they run: a crash of this process loses the requests in
hand (there is no broker to redeliver them); the claims table still guards against a
second run when they are re-requested.
"""

from __future__ import annotations

import functools
import heapq
import importlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING

from metatrail.consumer.apply import retry_transient
from metatrail.consumer.store.migrate import upgrade
from metatrail.consumer.triggers.relay import relay_once
from metatrail.consumer.worker.lookup import shared_engine
from metatrail.consumer.worker.runner import Outcome, TriggerRunner
from metatrail.schemas.events import TriggerRequested
from metatrail.schemas.settings import Settings

if TYPE_CHECKING:
    from metatrail.producer.steps import Step

log = logging.getLogger(__name__)



@dataclass
class EmbeddedReport:
    """What one ``run_embedded`` call did."""

    outcomes: list[Outcome] = field(default_factory=list)
    timed_out: bool = False

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ran(self) -> int:
        return self.count("ran")

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def skipped(self) -> int:
        return self.count("skipped")


def resolve_steps(module_or_steps: ModuleType | str | Iterable[Step]) -> list[Step]:
    """Steps of a module (object or dotted name, imported if needed) or a list of steps."""
    from metatrail.producer.steps import Step, steps_in

    if isinstance(module_or_steps, str):
        module_or_steps = importlib.import_module(module_or_steps)
    if isinstance(module_or_steps, ModuleType):
        return steps_in(module_or_steps)
    steps = list(module_or_steps)
    bad = [s for s in steps if not isinstance(s, Step)]
    if bad:
        raise TypeError(f"not @step functions: {bad!r}")
    return steps


def register_steps(steps: Sequence[Step]) -> None:
    """Emit one ``step.registered`` event per step through the producer's emitter."""
    from metatrail.producer import emitter

    emitter.emit([s.registration() for s in steps])


class _Publisher:
    """The relay's publisher in embedded mode: an in-memory queue ordered by due time."""

    def __init__(self, runner: TriggerRunner) -> None:
        self._runner = runner
        self._heap: list[tuple[float, int, TriggerRequested]] = []
        self._seq = 0

    def publish(self, requests: Sequence[TriggerRequested]) -> None:
        for r in requests:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + self._runner.due_in_s(r), self._seq, r))

    def pop_due(self) -> TriggerRequested | None:
        if self._heap and self._heap[0][0] <= time.monotonic():
            return heapq.heappop(self._heap)[2]
        return None

    def next_due_in_s(self) -> float | None:
        return max(0.0, self._heap[0][0] - time.monotonic()) if self._heap else None


def _flush(settings: Settings) -> None:
    from metatrail.producer import emitter

    emitter.flush(timeout_s=max(settings.exit_flush_timeout_s, 30.0))


def run_embedded(
    module_or_steps: ModuleType | str | Iterable[Step],
    *,
    settings: Settings | None = None,
    until_idle: bool = True,
    timeout_s: float = 60.0,
    poll_interval_s: float = 0.05,
    register: bool = True,
    stop: threading.Event | None = None,
    retry_base_s: float | None = None,
) -> EmbeddedReport:
    """Run the steps' triggers from the local store in this thread.

    Registers the steps (``register=True``), then loops: flush the producer (so what ran
    is applied and evaluated), take this worker's unsent triggers, run those that are due.
    With ``until_idle`` it returns once nothing is queued, due or pending; otherwise it
    runs until ``stop`` is set. Either way it returns after ``timeout_s`` with
    ``timed_out=True``. Blocking; raises ``StoreError`` if the store fails for good.
    """
    if settings is None:
        from metatrail.producer import emitter

        settings = emitter.settings()
    steps = resolve_steps(module_or_steps)
    engine = shared_engine(settings.store_url)
    upgrade(engine)
    if register and steps:
        register_steps(steps)
    kwargs = {} if retry_base_s is None else {"retry_base_s": retry_base_s}
    runner = TriggerRunner(engine, steps, **kwargs)
    queue = _Publisher(runner)
    report = EmbeddedReport()
    deadline = time.monotonic() + timeout_s
    step_ids = runner.step_ids
    while True:
        _flush(settings)
        retry_transient(lambda: relay_once(engine, queue, step_ids=step_ids), settings)
        request = queue.pop_due()
        if request is not None:
            outcome = retry_transient(functools.partial(runner.handle, request), settings)
            report.outcomes.append(outcome)
            if outcome.retry is not None:
                queue.publish([outcome.retry])
            if time.monotonic() > deadline:
                report.timed_out = True
                return report
            continue
        wait_s = queue.next_due_in_s()
        if wait_s is None and until_idle:
            return report
        if time.monotonic() > deadline or (stop is not None and stop.is_set()):
            report.timed_out = time.monotonic() > deadline
            return report
        pause = poll_interval_s if wait_s is None else min(wait_s, poll_interval_s * 4)
        if stop is not None:
            stop.wait(pause)
        else:
            time.sleep(pause)
