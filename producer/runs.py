"""``run(...)``: open a run (and its pipeline / experiment contexts) around some work.

Everything recorded inside — executions, artifacts, metrics, nested runs — is associated
with / attributed to the contexts, and every event carries the ROOT run's id as
``run_id`` (the Kafka key). Context ids are ``context_id(type, name)``, so two processes
opening ``run("nightly", pipeline="taxi")`` join the same contexts.

Works as a context manager (``with run(...) as scope``) and as a decorator of sync and
async functions (each call opens the run anew). The run context records its start,
then its end and status (``COMPLETE`` / ``FAILED``) as bookkeeping properties
(``metatrail.schemas.reserved``), which queries show as the run's attributes.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from contextvars import Token
from datetime import datetime, timezone
from typing import Any, TypeVar
from uuid import UUID

from metatrail.producer import emitter, redact
from metatrail.producer.build import build
from metatrail.producer.context import CURRENT_RUN, RunScope, current_run
from metatrail.schemas.events import ContextUpserted
from metatrail.schemas.ids import context_id
from metatrail.schemas.reserved import RUN_ENDED_AT, RUN_STARTED_AT, RUN_STATUS
from metatrail.schemas.values import typed

F = TypeVar("F", bound=Callable[..., Any])


def _context_event(
    type_name: str,
    name: str,
    cid: UUID,
    root: UUID,
    parents: list[UUID],
    props: Mapping[str, Any] | None,
    custom: Mapping[str, Any] | None,
) -> ContextUpserted:
    properties, custom_properties, _ = redact.node(
        typed(dict(props or {})), typed(dict(custom or {}))
    )
    return build(
        ContextUpserted,
        run_id=root,
        context_id=cid,
        type=type_name,
        name=name,
        parent_ids=parents,
        properties=properties,
        custom_properties=custom_properties,
    )


class run:  # noqa: N801  (public API name, used like a function)
    """Open a run context named ``name`` (type ``type``), with optional ``pipeline`` and
    ``experiment`` parent contexts. Never raises into the caller (unless strict)."""

    def __init__(
        self,
        name: str,
        *,
        pipeline: str | None = None,
        experiment: str | None = None,
        type: str = "Run",
        properties: Mapping[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.pipeline = pipeline
        self.experiment = experiment
        self.type = type
        self.properties = dict(properties or {})
        self._tokens: list[tuple[Token[RunScope | None], RunScope]] = []

    def _open(self) -> RunScope:
        outer = current_run()
        rid = context_id(self.type, self.name)
        root = outer.run_id if outer is not None else rid
        parents: list[tuple[str, str, UUID]] = []
        if self.pipeline:
            parents.append(("Pipeline", self.pipeline, context_id("Pipeline", self.pipeline)))
        if self.experiment:
            parents.append(
                ("Experiment", self.experiment, context_id("Experiment", self.experiment))
            )
        parent_ids = [p[2] for p in parents] + ([outer.context_id] if outer is not None else [])
        ids = list(outer.context_ids) if outer is not None else []
        for cid in [p[2] for p in parents] + [rid]:
            if cid not in ids:
                ids.append(cid)
        scope = RunScope(
            run_id=root, context_id=rid, type=self.type, name=self.name, context_ids=tuple(ids)
        )
        try:
            events = [_context_event(t, n, cid, root, [], None, None) for t, n, cid in parents]
            started = {RUN_STARTED_AT: datetime.now(timezone.utc).isoformat()}
            events.append(
                _context_event(
                    self.type, self.name, rid, root, parent_ids, self.properties, started
                )
            )
            emitter.emit(events)
        except Exception as exc:
            emitter.report("run", exc)
        return scope

    def _close(self, scope: RunScope, failed: bool) -> None:
        try:
            custom = {
                RUN_STATUS: "FAILED" if failed else "COMPLETE",
                RUN_ENDED_AT: datetime.now(timezone.utc).isoformat(),
            }
            emitter.emit(
                [
                    _context_event(
                        scope.type, scope.name, scope.context_id, scope.run_id, [], None, custom
                    )
                ]
            )
        except Exception as exc:
            emitter.report("run", exc)

    @property
    def scope(self) -> RunScope | None:
        """The scope of the innermost ``with`` of this object still open, else ``None``."""
        return self._tokens[-1][1] if self._tokens else None

    def __enter__(self) -> RunScope:
        scope = self._open()
        self._tokens.append((CURRENT_RUN.set(scope), scope))
        return scope

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        token, scope = self._tokens.pop()
        CURRENT_RUN.reset(token)
        self._close(scope, exc is not None)

    def _copy(self) -> run:
        return run(
            self.name,
            pipeline=self.pipeline,
            experiment=self.experiment,
            type=self.type,
            properties=self.properties,
        )

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._copy():
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]
