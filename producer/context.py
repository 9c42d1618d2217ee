"""Where recording happens: the current run and the current execution, as contextvars.

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from uuid import UUID

if TYPE_CHECKING:
    from metatrail.producer.recorder import ExecutionHandle

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


_RUN: contextvars.ContextVar[RunScope | None] = contextvars.ContextVar(
    "metatrail_run", default=None
)
_EXECUTION: contextvars.ContextVar[ExecutionHandle | None] = contextvars.ContextVar(
    "metatrail_execution", default=None
)


def current_run() -> RunScope | None:
    """The innermost open run of this context, or ``None``."""
    return _RUN.get()


def current_execution() -> ExecutionHandle | None:
    """The tracked call running in this context, or ``None``."""
    return _EXECUTION.get()


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
