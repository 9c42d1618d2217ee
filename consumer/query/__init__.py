"""Queries on the lineage graph: lineage walks, the filter language, comparisons, warm
start. ``Store.open(url)`` is the entry point; it returns the domain objects of
:mod:`consumer.query.domain`, never ORM rows."""

from consumer.query.domain import (
    Artifact,
    Comparison,
    Context,
    Edge,
    Execution,
    LineageGraph,
    MetricHistoryRow,
    MetricPoint,
    Page,
    RunColumn,
)
from consumer.query.filters import parse_filter
from consumer.query.store import Store

__all__ = [
    "Artifact",
    "Comparison",
    "Context",
    "Edge",
    "Execution",
    "LineageGraph",
    "MetricHistoryRow",
    "MetricPoint",
    "Page",
    "RunColumn",
    "Store",
    "parse_filter",
]
