"""Small row helpers: metric values and samples (nodes load through :mod:`metatrail.consumer.query.raw`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from metatrail.consumer.query.domain import MetricPoint


def metric_value(value: float | None, nonfinite: str | None) -> float:
    if value is not None:
        return float(value)
    return float(nonfinite or "nan")


def metric_points(rows: Iterable[Any]) -> list[MetricPoint]:
    return [
        MetricPoint(key=r.key, value=metric_value(r.value, r.nonfinite), step=r.step, timestamp=r.timestamp,
                    execution_id=r.execution_id, context_id=r.context_id)
        for r in rows
    ]
