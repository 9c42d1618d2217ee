"""OpenLineage batches are mapped and applied in a pool of processes, not in the worker's
threads, when the store is a database server.

Why: mapping and applying a batch is Python work that holds the interpreter for all of
it (about 150 ms for 500 events). uvicorn's workers take connections from the shared port
as they come, so two batches in flight often landed in one worker, which ran them one
after the other while another worker's core idled (with two workers and four clients,
2,819 OpenLineage events/s, against 3,193 in apply processes). In a pool of processes (by
default the cores shared among the workers, two at least), the batches of one worker run
side by side, and the worker's own threads only read bodies and answer.

Each process opens its own engine on the server's store and applies with the same code as
the worker would (``apply_openlineage``, the collector paused per batch) under the same
collector policy as a consumer. A SQLite store writes one transaction at a time whatever
the number of processes: there batches run in the worker's threads, as do all batches
of an app whose pool is off (``METATRAIL_SERVER_APPLY_PROCESSES=0``).

A process that dies (killed, out of memory) fails the batch it held: its transaction is
rolled back, the answer is 503 with ``Retry-After``, and the next batch starts a new
pool. Signals to the whole group are left to the worker once a process has started (a
process signalled while still importing, in its first second, stops: its batch is a 503).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from metatrail.consumer.apply.collector import call_paused
from metatrail.consumer.server.errors import ApiError
from metatrail.schemas.settings import Settings

T = TypeVar("T")

log = logging.getLogger("metatrail.server")

#: What a pool process applies with, set by ``_start`` (one store, one settings).
_PROCESS: dict[str, Any] = {}


def _start(store_url: str, settings: Settings, preload: tuple[str, ...]) -> None:
    """Initialise a pool process: the modules its batches run (imported before the
    collector freezes what start-up made), an engine on the server's store, and the
    collector policy of a process that applies batches. SIGINT and SIGTERM are the
    worker's to act on (a terminal's Ctrl-C, or a service manager, signals the whole
    group): the worker lets the batches in flight finish, then stops its processes."""
    from metatrail.consumer.service.gcpolicy import tune_for_batches
    from metatrail.consumer.store.engine import open_engine

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    for module in preload:
        importlib.import_module(module)
    logging.getLogger("metatrail").setLevel(logging.INFO)
    _PROCESS["engine"] = open_engine(store_url)
    _PROCESS["settings"] = settings
    tune_for_batches()


def _started() -> None:
    """A task that only makes the pool start a process."""


def _in_process(fn: Callable[..., T], *args: Any) -> T:
    """``fn(engine, settings, *args)`` in a pool process, with the collector paused."""
    return call_paused(fn, _PROCESS["engine"], _PROCESS["settings"], *args)


class Appliers:
    """Where a worker runs its batches: ``run(fn, *args)`` calls ``fn(engine, settings,
    *args)`` in a pool process (``fn`` and its arguments travel by pickle; ``preload``
    names the modules they come from), or in a thread of the worker on the worker's write
    engine when the pool is off. Every process of the pool is started at once, by
    ``start`` or by the first batch: a process that started while batches were in flight
    took a core for a second (its imports) just when the batches needed it."""

    def __init__(self, engine: Engine, settings: Settings, preload: tuple[str, ...] = ()) -> None:
        self.engine = engine
        self.settings = settings
        self.preload = preload
        size = settings.server_apply_processes
        if size is None:  # the cores shared among the workers, two at least (~90 MB each)
            size = max(2, -(-(os.cpu_count() or 1) // settings.server_workers))
        self.size = size if engine.dialect.name != "sqlite" else 0
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the pool's processes now, in the background (a server that is starting)."""
        if self.size:
            self._pool()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.size:
            return await run_in_threadpool(call_paused, fn, self.engine, self.settings, *args)
        executor = self._pool()
        try:
            return await asyncio.wrap_future(executor.submit(_in_process, fn, *args))
        except BrokenProcessPool as exc:
            self._discard(executor)
            log.error("an apply process stopped (%s); the batch was not applied", exc)
            raise ApiError(503, "apply_process_stopped", "the process applying this batch stopped; send it again",
                           headers={"Retry-After": "1"}) from None

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                url = self.engine.url.render_as_string(hide_password=False)
                executor = ProcessPoolExecutor(self.size, mp_context=multiprocessing.get_context("spawn"),
                                               initializer=_start, initargs=(url, self.settings, self.preload))
                for _ in range(self.size):  # a process per task while none is idle
                    executor.submit(_started)
                self._executor = executor
            return self._executor

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        """Forget a broken pool (its processes are gone); the next batch starts another."""
        with self._lock:
            if self._executor is executor:
                self._executor = None
        executor.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Let batches in flight finish, then stop the processes."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=False)
