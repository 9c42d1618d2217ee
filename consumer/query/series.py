"""A metric's samples over steps, for charts: one series per execution (or run), cut down
on the server to at most ``max_points`` points that keep each stretch's extremes.

Downsampling: the step range is split into ``max_points // 3`` buckets of equal width;
each bucket keeps its lowest and highest sample and its first non-finite one (a diverging
run), so a spike or a dip survives however far a chart is zoomed out. The buckets are
computed by the database (only the kept rows leave it: a 100,000-sample series is one
index scan). Downsampled points carry no timestamp (charts are over steps). Samples
without a step come after the stepped ones, in time order (cut down in Python: they are
rare).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metatrail.consumer.query.convert import metric_value
from metatrail.consumer.query.domain import _JSON
from metatrail.consumer.query.raw import CHUNK, Raw, utc
from metatrail.consumer.store.batching import chunks

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


def _where(raw: Raw, column: str, alias: str = "") -> str:
    return f"{alias}{column} = ? AND {alias}{raw.quote('key')} = ?"


def _all_samples(raw: Raw, where: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Every sample, stepped ones in step order, then the others in time order."""
    base = f"SELECT step, value, nonfinite, timestamp FROM mt_metrics WHERE {where}"
    stepped = raw.rows(base + " AND step IS NOT NULL ORDER BY step, event_id, seq", params)
    return stepped + raw.rows(base + " AND step IS NULL ORDER BY timestamp, event_id, seq", params)


def _keep(values: Sequence[float], max_points: int) -> list[int]:
    """Indexes of the samples to keep: per bucket of equal count, the lowest, the highest
    and the first NaN (used for samples that have no step)."""
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
        finite = [i for i in span if not math.isnan(get(i))]
        picks = set()
        if finite:
            picks.add(min(finite, key=get))
            picks.add(max(finite, key=get))
        if len(finite) != len(span):
            picks.add(next(i for i in span if math.isnan(get(i))))
        kept.extend(sorted(picks))
    return kept


def _bucket_extremes(raw: Raw, column: str, params: list[Any], lo: int, hi: int,
                     buckets: int) -> tuple[list[tuple[Any, ...]], int]:
    """(step, value, nonfinite) of each step bucket's lowest and highest finite sample and
    first non-finite one, and how many stepped samples there are; computed in the
    database, so only these rows leave it (the owner index covers step, value and
    nonfinite: each pass reads the index alone)."""
    width = max(1, -(-(hi - lo + 1) // buckets))
    where = _where(raw, column)
    stepped = f"FROM mt_metrics WHERE {where} AND step IS NOT NULL"
    if raw.dialect == "postgresql" and max(abs(lo), abs(hi)) <= _EXACT_IN_DOUBLE:
        rows, total, odd = _array_extremes(raw, where, params, lo, width)
    else:
        counts = raw.rows(f"SELECT COUNT(*), COUNT(nonfinite) {stepped}", params)[0]
        total, odd = int(counts[0]), int(counts[1])
        if raw.dialect == "sqlite":
            rows = _sqlite_extremes(raw, where, params, lo, hi, width)
        else:
            rows = _grouped_extremes(raw, column, params, lo, width)
    if odd:
        seen: set[int] = set()
        for step, nonfinite in raw.rows(f"SELECT step, nonfinite {stepped} AND nonfinite IS NOT NULL ORDER BY step",
                                        params):
            b = (step - lo) // width
            if b not in seen:  # the first non-finite sample of each bucket
                seen.add(b)
                rows.append((step, None, nonfinite))
    return sorted(set(rows), key=lambda r: (r[0], r[2] or "", r[1] if r[1] is not None else 0.0)), int(total)


def _sqlite_extremes(raw: Raw, where: str, params: list[Any], lo: int, hi: int, width: int) -> list[tuple[Any, ...]]:
    """SQLite: per bucket, a range scan of the covering index finds the step of its lowest
    and of its highest sample (a bare column takes the row of its query's one MIN / MAX),
    all buckets in one statement with no sort (a grouping would build a temporary B-tree
    of the whole series); then the samples at those steps are read by index."""
    buckets = -(-(hi - lo + 1) // width)
    scan = (f"FROM mt_metrics WHERE {where} AND step >= {int(lo)} + i * {int(width)} "
            f"AND step < {int(lo)} + (i + 1) * {int(width)}")
    low = f"SELECT s FROM (SELECT step AS s, MIN(value) {scan})"
    high = f"SELECT s FROM (SELECT step AS s, MAX(value) {scan})"
    steps = raw.rows(
        f"WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i < {int(buckets) - 1}) "
        f"SELECT ({low}), ({high}) FROM b", [*params, *params])
    wanted = sorted({s for pair in steps for s in pair if s is not None})
    extremes: dict[int, tuple[float, float]] = {}  # step -> (lowest, highest) sample there
    for part in chunks(wanted, CHUNK):
        test, args = raw.one_of(part)
        for step, value in raw.rows(f"SELECT step, value FROM mt_metrics WHERE {where} AND step {test} "
                                    f"AND value IS NOT NULL", [*params, *args]):
            low, high = extremes.get(step, (value, value))
            extremes[step] = (min(low, value), max(high, value))
    return [(step, v, None) for step, pair in extremes.items() for v in set(pair)]


#: Largest step a double holds exactly (PostgreSQL's ``ARRAY[value, step]`` is of doubles).
_EXACT_IN_DOUBLE = 2**53


def _array_extremes(raw: Raw, where: str, params: list[Any], lo: int,
                    width: int) -> tuple[list[tuple[Any, ...]], int, int]:
    """PostgreSQL: each bucket's lowest and highest sample with its step, and its counts
    of samples and of non-finite ones, in one hashed grouping: one pass over the covering
    index. ``MIN(ARRAY[value, step])`` orders by value, then step; the highest takes
    ``-step``, so ties keep the first step, as ``_grouped_extremes`` does. (The grouping
    joined back to the series, as on MariaDB, could take minutes here once the planner
    knew the table's size: it picked a nested loop over the bucket join.)"""
    finite = "FILTER (WHERE value IS NOT NULL)"
    sql = (f"SELECT MIN(ARRAY[value, step]) {finite}, MAX(ARRAY[value, -step]) {finite}, COUNT(*), "
           f"COUNT(nonfinite) FROM mt_metrics WHERE {where} AND step IS NOT NULL "
           f"GROUP BY (step - {int(lo)}) / {int(width)}")
    rows: list[tuple[Any, ...]] = []
    total = odd = 0
    for low, high, count, nonfinite in raw.rows(sql, params):
        total, odd = total + int(count), odd + int(nonfinite)
        if low is not None:
            rows.append((int(low[1]), low[0], None))
            rows.append((-int(high[1]), high[0], None))
    return rows, total, odd


def _grouped_extremes(raw: Raw, column: str, params: list[Any], lo: int, width: int) -> list[tuple[Any, ...]]:
    """MariaDB (and PostgreSQL beyond double-exact steps): each bucket's MIN and MAX by one
    hashed grouping, then the samples holding them by a join on (bucket, value): two passes
    over the covering index, no sort of the series."""
    div = "DIV" if raw.dialect in ("mysql", "mariadb") else "/"
    bucket = f"((m.step - {int(lo)}) {div} {int(width)})"
    owner = _where(raw, column, "m.")
    sql = (f"SELECT m.step, m.value FROM mt_metrics m JOIN ("
           f"SELECT {bucket} AS b, MIN(m.value) AS low, MAX(m.value) AS high FROM mt_metrics m "
           f"WHERE {owner} AND m.step IS NOT NULL GROUP BY {bucket}) g "
           f"ON {bucket} = g.b AND (m.value = g.low OR m.value = g.high) "
           f"WHERE {owner} AND m.step IS NOT NULL")
    seen: set[tuple[int, float]] = set()
    rows: list[tuple[Any, ...]] = []
    for step, value in sorted(raw.rows(sql, [*params, *params])):
        if ((step - lo) // width, value) not in seen:  # one sample per extreme of a bucket (ties: the first)
            seen.add(((step - lo) // width, value))
            rows.append((step, value, None))
    return rows


def _one_series(raw: Raw, column: str, owner: str, key: str, max_points: int) -> tuple[list[SeriesPoint], int]:
    where, params = _where(raw, column), [owner, key]
    # At most max_points + 1 index entries read to decide whether to downsample at all.
    head = int(raw.rows(f"SELECT COUNT(*) FROM (SELECT 1 AS x FROM mt_metrics WHERE {where} "
                        f"LIMIT {int(max_points) + 1}) h", params)[0][0])
    if head <= max_points:
        rows = _all_samples(raw, where, params)
        return [SeriesPoint(r[0], metric_value(r[1], r[2]), utc(r[3])) for r in rows], len(rows)
    unstepped = int(raw.rows(f"SELECT COUNT(*) FROM mt_metrics WHERE {where} AND step IS NULL", params)[0][0])
    points: list[SeriesPoint] = []
    total = unstepped
    bounds = raw.rows(f"SELECT MIN(step) FROM mt_metrics WHERE {where}", params)[0][0], \
        raw.rows(f"SELECT MAX(step) FROM mt_metrics WHERE {where}", params)[0][0]
    if bounds[0] is not None:
        share = max_points if not unstepped else max(MIN_POINTS, max_points // 2)
        extremes, stepped = _bucket_extremes(raw, column, params, int(bounds[0]), int(bounds[1]), max(1, share // 3))
        total += stepped
        points += [SeriesPoint(step, metric_value(value, nonfinite), None) for step, value, nonfinite in extremes]
    if unstepped:
        base = f"SELECT step, value, nonfinite, timestamp FROM mt_metrics WHERE {where} AND step IS NULL"
        rows = raw.rows(base + " ORDER BY timestamp, event_id, seq", params)
        values = [metric_value(r[1], r[2]) for r in rows]
        points += [SeriesPoint(None, values[i], utc(rows[i][3])) for i in _keep(values, max(1, max_points - len(points)))]
    return points, total


def metric_series(raw: Raw, key: str, owners: Sequence[tuple[str, str]], max_points: int) -> list[MetricSeries]:
    """One series per (``"execution"`` | ``"context"``, id) owner that logged ``key``
    (owners without samples are left out), each at most ``max_points`` points."""
    out = []
    for kind, owner in owners:
        points, total = _one_series(raw, f"{kind}_id", owner, key, max_points)
        if total:
            out.append(MetricSeries(key, owner if kind == "execution" else None, owner if kind == "context" else None,
                                    total, len(points) < total, tuple(points)))
    return out


def run_executions(raw: Raw, context_id: str) -> list[str]:
    """The executions associated with a context, by id."""
    return [r[0] for r in raw.rows("SELECT execution_id FROM mt_associations WHERE context_id = ? ORDER BY execution_id",
                                   [context_id])]


__all__ = ["MIN_POINTS", "MetricSeries", "SeriesPoint", "metric_series", "run_executions"]
