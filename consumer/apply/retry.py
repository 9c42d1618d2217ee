"""The one retry policy of the store boundary: retry what says it is retriable."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from metatrail.schemas.ids import jitter
from metatrail.schemas.settings import Settings

T = TypeVar("T")
log = logging.getLogger("metatrail.apply")


def _retriable(exc: BaseException) -> bool:
    return bool(getattr(exc, "retriable", False))


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning("store attempt %d failed (%s); retrying the whole batch", state.attempt_number, exc)


def retry_transient(fn: Callable[[], T], settings: Settings) -> T:
    """Call ``fn`` until it succeeds, retrying errors whose ``retriable`` flag is set
    (``TransientStoreError``) with jittered exponential back-off, at most
    ``settings.db_retry_attempts`` times. The last error is re-raised unchanged.
    ``fn`` must redo its work from scratch (a whole transaction)."""
    exponential = wait_exponential(multiplier=0.05, max=settings.db_retry_max_wait_s)

    def backoff_s(state: RetryCallState) -> float:
        # jitter from the ids' private generator: this runs inside the user's process in
        # embedded mode, and tenacity's wait_random would advance their ``random`` state
        return exponential(state) + jitter(0.0, 0.05)

    retrying = Retrying(
        stop=stop_after_attempt(settings.db_retry_attempts),
        wait=backoff_s,
        retry=retry_if_exception(_retriable),
        before_sleep=_log_retry,
        reraise=True,
    )
    return retrying(fn)
