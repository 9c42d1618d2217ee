"""A metric's samples over steps, for charts: one series per execution (or run), cut down
on the server to at most ``max_points`` points that keep each stretch's extremes.

Downsampling: the samples, in step order, are split into ``max_points // 2`` buckets of
equal count; each bucket keeps its lowest and highest sample (in their own order), so a
spike or a dip survives however far a chart is zoomed out, and the first NaN of a bucket
(a diverging run) is kept too. Samples without a step come after the stepped ones, in
time order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metatrail.consumer.query.convert import metric_value
from metatrail.consumer.query.domain import _JSON
from metatrail.consumer.query.raw import Raw, utc

#: Fewest points a downsampled series may be asked for.
MIN_POINTS = 2


@dataclass(frozen=True)
class SeriesPoint(_JSON):
    step: int | None
    value: float
    timestamp: datetime | None


@dataclass(frozen=True)
class MetricSeries(_JSON):
    """Samples of ``key`` logged by one execution (``execution_id``) or by a context
    itself (``context_id``). ``total`` counts every stored sample; ``downsampled`` says
    whether ``points`` is a subset of them."""

    key: str
    execution_id: str | None
    context_id: str | None
    total: int
    downsampled: bool
    points: tuple[SeriesPoint, ...]


def _samples(raw: Raw, column: str, owner: str, key: str) -> list[tuple[Any, ...]]:
    k = raw.quote("key")
    base = f"SELECT step, value, nonfinite, timestamp FROM mt_metrics WHERE {column} = ? AND {k} = ?"
    stepped = raw.rows(base + " AND step IS NOT NULL ORDER BY step, event_id, seq", [owner, key])
    unstepped = raw.rows(base + " AND step IS NULL ORDER BY timestamp, event_id, seq", [owner, key])
    return stepped + unstepped


def _keep(values: Sequence[float], max_points: int) -> list[int]:
    """Indexes of the samples to keep (see the module docstring)."""
    n = len(values)
    if n <= max_points:
        return list(range(n))
    buckets = max(1, max_points // 2)
    get = values.__getitem__
    kept: list[int] = []
    for b in range(buckets):
        start, end = b * n // buckets, (b + 1) * n // buckets
        if start >= end:
            continue
        span = range(start, end)
        finite = [i for i in span if not math.isnan(get(i))] if any(math.isnan(v) for v in values[start:end]) else span
        picks = set()
        if finite:
            picks.add(min(finite, key=get))
            picks.add(max(finite, key=get))
        if len(finite) != len(span):
            picks.add(next(i for i in span if math.isnan(get(i))))
        kept.extend(sorted(picks))
    return kept


def metric_series(raw: Raw, key: str, owners: Sequence[tuple[str, str]], max_points: int) -> list[MetricSeries]:
    """One series per (``"execution"`` | ``"context"``, id) owner that logged ``key``
    (owners without samples are left out), each at most ``max_points`` points."""
    out = []
    for kind, owner in owners:
        rows = _samples(raw, f"{kind}_id", owner, key)
        if not rows:
            continue
        values = [metric_value(r[1], r[2]) for r in rows]
        keep = _keep(values, max_points)
        points = tuple(SeriesPoint(rows[i][0], values[i], utc(rows[i][3])) for i in keep)
        out.append(MetricSeries(key, owner if kind == "execution" else None, owner if kind == "context" else None,
                                len(rows), len(keep) < len(rows), points))
    return out


def run_executions(raw: Raw, context_id: str) -> list[str]:
    """The executions associated with a context, by id."""
    return [r[0] for r in raw.rows("SELECT execution_id FROM mt_associations WHERE context_id = ? ORDER BY execution_id",
                                   [context_id])]


__all__ = ["MIN_POINTS", "MetricSeries", "SeriesPoint", "metric_series", "run_executions"]
