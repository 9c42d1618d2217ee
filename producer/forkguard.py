"""Never fork while a thread of this process is inside SQLite on the spool.

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

So every method that uses the spool's SQLite connections is ``guarded`` by one process-wide
lock, and ``os.register_at_fork`` takes the same lock before a fork and releases it
after, in the parent and in the child: a fork waits for the statement in progress (a few
milliseconds) and never happens in the middle of one.

* Reentrant: a thread that forks from inside a guarded method (a transport forking in the
  relay thread) does not deadlock; that one child may inherit a held lock.
* Bounded: a fork waits at most ``FORK_WAIT_S`` (a statement stuck behind another
  process's lock must not stall the user's ``fork``); then it proceeds regardless.
* The hot path (``Spool.append``, a journal write) never takes this lock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

#: Longest a fork waits for a spool statement in progress before proceeding regardless.
FORK_WAIT_S = 2.0

P = ParamSpec("P")
R = TypeVar("R")

_lock = threading.RLock()
_forking = threading.local()  # whether this thread's ``_before_fork`` got the lock


def guarded(method: Callable[P, R]) -> Callable[P, R]:
    """``method`` holds off forks of this process while it runs (it uses SQLite)."""

    @wraps(method)
    def run_held(*args: P.args, **kwargs: P.kwargs) -> R:
        lock = _lock  # a forked child replaces the module's lock; release the one taken
        with lock:
            return method(*args, **kwargs)

    return run_held


def _before_fork() -> None:
    _forking.acquired = _lock.acquire(timeout=FORK_WAIT_S)


def _after_fork_in_parent() -> None:
    if getattr(_forking, "acquired", False):
        _forking.acquired = False
        _lock.release()


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.RLock()  # other threads' holds of the old one do not exist here
    _forking.acquired = False


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
