"""Never fork while a thread of this process is inside SQLite on the spool or the store.

SQLite keeps its lock bookkeeping for a file per PROCESS, shared by every connection of
the process to that file (which connection holds the WAL write lock, the read marks...),
together with the mutexes guarding it. A child forked while a parent thread (the relay) is
inside SQLite on the spool inherits that state as it was at that instant, and nothing in
the child will ever change it: if a write was in progress, the bookkeeping says a sibling
connection holds the write lock, and every write from the child's own connection waits
the busy timeout and fails with "database is locked"; if a lock call was in progress (a
read starting is enough), the child's first statement blocks forever on the inherited
mutex. Closing the inherited connection in the child is no cure (its rollback would touch
the parent's shared WAL index).

So every method that uses the spool's SQLite connections holds ``spool_guard``, a
process-wide lock, and ``os.register_at_fork`` takes the same lock before a fork and
releases it after, in the parent and in the child: a fork waits for the statement in
progress (a few milliseconds) and never happens in the middle of one. The embedded
transport's applies to a local SQLite store hold ``store_guard`` the same way (a fork
waits for the batch in progress, tens of milliseconds): the child applies its own events
to that store.

* Reentrant: a thread that forks from inside a guarded method (a transport forking in the
  relay thread) does not deadlock; that one child may inherit a held lock.
* Bounded: a fork waits at most ``FORK_WAIT_S`` (a statement stuck behind another
  process's lock must not stall the user's ``fork``); then it proceeds regardless.
* The hot path (``Spool.append``, a journal write) never takes these locks, and the
  spool's statements never wait for an apply (two guards, not one).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

#: Longest a fork waits for the statements and applies in progress (all guards together)
#: before proceeding regardless.
FORK_WAIT_S = 2.0

P = ParamSpec("P")
R = TypeVar("R")


class ForkGuard:
    """One process-wide reentrant lock that a fork waits for. Use an instance as a
    decorator: the method holds off forks while it runs. Each SQLite file the producer
    uses gets its own guard, so work on one never waits for work on another."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._forking = threading.local()  # whether this thread's fork took the lock
        _GUARDS.append(self)

    def __call__(self, method: Callable[P, R]) -> Callable[P, R]:
        @wraps(method)
        def run_held(*args: P.args, **kwargs: P.kwargs) -> R:
            lock = self._lock  # a forked child replaces the lock; release the one taken
            with lock:
                return method(*args, **kwargs)

        return run_held

    def _before_fork(self, deadline: float) -> None:
        self._forking.acquired = self._lock.acquire(timeout=max(0.0, deadline - time.monotonic()))

    def _after_fork_in_parent(self) -> None:
        if getattr(self._forking, "acquired", False):
            self._forking.acquired = False
            self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()  # other threads' holds of the old one do not exist here
        self._forking.acquired = False


_GUARDS: list[ForkGuard] = []

#: The spool's SQLite file (``metatrail.producer.spool``).
spool_guard = ForkGuard()
#: The local store the embedded transport applies to (``metatrail.producer.transports.embedded``).
store_guard = ForkGuard()


def _before_fork() -> None:
    deadline = time.monotonic() + FORK_WAIT_S  # one bound for all guards together
    for guard in _GUARDS:
        guard._before_fork(deadline)


def _after_fork_in_parent() -> None:
    for guard in reversed(_GUARDS):
        guard._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for guard in _GUARDS:
        guard._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
