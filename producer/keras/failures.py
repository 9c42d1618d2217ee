"""Noticing a fit that fails, which Keras 3 does not report to callbacks.

There is no ``on_train_error`` hook, so three things stand in for it (see the package doc):
the model's step functions wrapped for the length of a fit, a finalizer on the fit's
``CallbackList`` (set up by the callback), and an exit hook that fails the fits still open
when the program dies. Nothing here raises into the training loop.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from metatrail.producer.recorder import ExecutionHandle

log = logging.getLogger("metatrail.producer.keras")


class OpenFit(Protocol):
    """What this module needs of a callback whose fit is running (``MetadataCallback``)."""

    def record_fit_failure(self, exc: BaseException) -> None:
        """Record the running fit FAILED with ``exc``; never raises."""


#: Callbacks whose fit is running, failed at exit if still open (see ``_fail_open_fits``).
_OPEN_FITS: weakref.WeakSet[OpenFit] = weakref.WeakSet()
_ATEXIT_LOCK = threading.Lock()
_atexit_registered = False


class FitAborted(RuntimeError):
    """Recorded as the error of a fit that ended without ``on_train_end`` and without an
    exception in a training or validation step (a data generator or callback raised)."""

    # Recorded error types name the class by module: keep the public import path.
    __module__ = "metatrail.keras"


def track_open_fit(cb: OpenFit) -> None:
    """Note that ``cb``'s fit is running (registers the exit hook on first use)."""
    global _atexit_registered
    _OPEN_FITS.add(cb)
    with _ATEXIT_LOCK:
        if not _atexit_registered:
            # Registered after the emitter's exit flush, so it runs before it (LIFO).
            atexit.register(_fail_open_fits)
            _atexit_registered = True


def forget_open_fit(cb: OpenFit) -> None:
    """Note that ``cb``'s fit is over (ended or already recorded FAILED)."""
    _OPEN_FITS.discard(cb)


def _fail_open_fits() -> None:
    """At exit, a fit still open died with the process: record it FAILED with the error
    that ended the program when there is one (``sys.last_value``)."""
    error = getattr(sys, "last_value", None)
    for cb in list(_OPEN_FITS):
        cb.record_fit_failure(
            error if isinstance(error, BaseException) else FitAborted("the process exited during fit")
        )


def record_failure(rec: ExecutionHandle | None, exc: BaseException) -> None:
    """Record ``rec`` FAILED with ``exc`` unless it has ended; errors are logged."""
    if rec is None or rec.done:
        return
    try:
        rec.fail(exc)
    except Exception:
        log.warning("metatrail: could not record the failed fit", exc_info=True)


def wrap_step_functions(model: Any, on_error: Callable[[BaseException], None]) -> dict[str, Any]:
    """Wrap ``model.train_function`` / ``test_function`` so that an exception in a step
    calls ``on_error`` and then propagates unchanged. Returns the replaced functions by
    attribute, for ``unwrap_step_functions``; functions already wrapped are left alone."""
    wrapped: dict[str, Any] = {}
    for attr in ("train_function", "test_function"):
        fn = getattr(model, attr, None)
        if fn is None or getattr(fn, "_metatrail_wrapped", False):
            continue
        def guarded(*a: Any, __fn: Any = fn, **kw: Any) -> Any:
            try:
                return __fn(*a, **kw)
            except BaseException as exc:
                on_error(exc)
                raise

        guarded._metatrail_wrapped = True  # type: ignore[attr-defined]
        wrapped[attr] = fn
        setattr(model, attr, guarded)
    return wrapped


def unwrap_step_functions(model: Any, wrapped: dict[str, Any]) -> None:
    """Put back the functions ``wrap_step_functions`` replaced (those Keras has not
    dropped since). Never raises."""
    for attr, fn in wrapped.items():
        try:
            if getattr(model, attr, None) is not None:
                setattr(model, attr, fn)
        except Exception:
            pass
