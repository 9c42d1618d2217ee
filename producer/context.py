"""Where recording happens: the current run, the current execution and the trigger a
step runs for, as contextvars.

The bottom of the producer: this module imports nothing else of it. The recorder, the
decorators and ``run(...)`` set these variables; ``metatrail.producer.recorder`` reads the
current execution back with its type (``recorder.current_execution``).

``asyncio`` tasks copy the context when they are created, so a task started inside a run
(or inside a tracked call) is attributed to it with no help. Threads do not inherit the
context: wrap the target with :func:`propagate` or use :class:`Thread`, which captures the
caller's context when it is constructed::

    with run("nightly"):
        t = producer.Thread(target=load_shard, args=(3,))   # attributed to "nightly"
        pool.submit(producer.propagate(load_shard), 4)      # same, for executors
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar
from uuid import UUID

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class RunScope:
    """An open ``run(...)``: the contexts everything recorded inside it joins.

    ``run_id`` is the ROOT run's context id (the envelope ``run_id`` and Kafka key, so one
    run's events stay ordered in one partition); ``context_id`` is the innermost run's id;
    ``context_ids`` lists every context (pipelines, experiments, runs) an execution or
    artifact recorded inside is associated with / attributed to.
    """

    run_id: UUID
    context_id: UUID
    type: str
    name: str
    context_ids: tuple[UUID, ...]


#: The innermost open run (set by ``run(...)``).
CURRENT_RUN: contextvars.ContextVar[RunScope | None] = contextvars.ContextVar(
    "metatrail_run", default=None
)
#: The tracked call running in this context: a ``recorder.ExecutionHandle``, set by the
#: recorder and the decorators (``@track`` sets it directly: it is on the hot path).
CURRENT_EXECUTION: contextvars.ContextVar[object | None] = contextvars.ContextVar(
    "metatrail_execution", default=None
)


def current_run() -> RunScope | None:
    """The innermost open run of this context, or ``None``."""
    return CURRENT_RUN.get()


@dataclass(frozen=True)
class TriggerContext:
    """The trigger a step is running for: recorded on its execution events."""

    trigger_id: UUID
    attempt: int = 0


_TRIGGER: contextvars.ContextVar[TriggerContext | None] = contextvars.ContextVar(
    "metatrail_trigger", default=None
)


def current_trigger() -> TriggerContext | None:
    """The trigger the calling code runs for (inside a worker), else None."""
    return _TRIGGER.get()


def current_trigger_id() -> UUID | None:
    """The id of the trigger the calling code runs for, else None (``@track`` puts it on
    the execution's events)."""
    ctx = _TRIGGER.get()
    return ctx.trigger_id if ctx is not None else None


@contextmanager
def running_trigger(trigger_id: UUID, attempt: int = 0) -> Iterator[TriggerContext]:
    """Mark the code inside as running for ``trigger_id`` (used by workers)."""
    ctx = TriggerContext(trigger_id, attempt)
    token = _TRIGGER.set(ctx)
    try:
        yield ctx
    finally:
        _TRIGGER.reset(token)


def propagate(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to a copy of the caller's context (run and current execution), for
    threads and executors. Each call of the result runs in its own copy, so concurrent
    calls do not interfere."""
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def bound(*args: P.args, **kwargs: P.kwargs) -> R:
        return ctx.copy().run(fn, *args, **kwargs)

    return bound


class Thread(threading.Thread):
    """A ``threading.Thread`` that runs in a copy of the context it was created in, so
    calls tracked in it belong to the creator's run (and nest under its current call)."""

    def __init__(
        self,
        group: None = None,
        target: Callable[..., object] | None = None,
        name: str | None = None,
        args: Iterable[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        daemon: bool | None = None,
    ) -> None:
        super().__init__(group, target, name, args, kwargs, daemon=daemon)
        self._metatrail_context = contextvars.copy_context()

    def run(self) -> None:
        self._metatrail_context.run(super().run)
