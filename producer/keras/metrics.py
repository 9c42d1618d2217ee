"""Keras logs as metric values, and the buffer that spools batch metrics in groups.

One ``MetricsLogged`` event per batch would cost a spool append per batch; the buffer
turns that into one event per ``MAX_BUFFERED_POINTS`` points or ``BATCH_FLUSH_S``
seconds (and one at each epoch's end), so a logged batch costs a few microseconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

from metatrail.producer import emitter
from metatrail.producer.build import build
from metatrail.producer.recorder import ExecutionHandle
from metatrail.schemas.events import MetricPoint, MetricsLogged

#: Batch metrics are spooled as one event per this many points, or per this many seconds,
#: and at every epoch's end (one event per batch would cost a spool append per batch).
MAX_BUFFERED_POINTS = 2_000
BATCH_FLUSH_S = 1.0


def numbers(logs: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """The numeric entries of Keras logs (tensors and numpy scalars become floats)."""
    out: dict[str, float] = {}
    for key, value in (logs or {}).items():
        try:
            out[prefix + str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


class BatchMetrics:
    """Batch metric points waiting to be spooled. Thread-safe: Keras may run batch hooks
    in its callback thread pool, several at once."""

    def __init__(self) -> None:
        self._points: list[MetricPoint] = []
        self._lock = threading.Lock()
        self._flushed_at = 0.0

    def reset(self) -> None:
        """Empty the buffer and restart the flush clock (at the start of a fit)."""
        with self._lock:
            self._points = []
            self._flushed_at = time.monotonic()

    def add(self, points: list[MetricPoint]) -> bool:
        """Buffer ``points``; true when a flush is due (buffer full or clock expired)."""
        with self._lock:
            self._points.extend(points)
            return len(self._points) >= MAX_BUFFERED_POINTS or time.monotonic() - self._flushed_at >= BATCH_FLUSH_S

    def flush(self, rec: ExecutionHandle | None) -> None:
        """Spool the buffered batch metrics as one ``MetricsLogged`` event of ``rec``
        (dropped when there is no execution). A failure to spool is logged, raised only
        in strict mode (``emitter.report``)."""
        with self._lock:
            points, self._points = self._points, []
            self._flushed_at = time.monotonic()
        if not points or rec is None:
            return
        try:
            run_id = rec.scope.run_id if rec.scope is not None else None
            emitter.emit([build(MetricsLogged, run_id=run_id, execution_id=rec.execution_id, points=points)])
        except Exception as exc:
            emitter.report("log_metrics", exc)
