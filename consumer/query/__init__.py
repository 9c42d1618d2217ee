"""Queries on the lineage graph: lineage walks, the filter language, comparisons, diffs
and impact, warm start. ``Store.open(url)`` is the entry point; it returns the domain
objects of :mod:`metatrail.consumer.query.domain` (and ``diffmodel``, ``impact``), never
ORM rows."""

from metatrail.consumer.query.domain import (
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
from metatrail.consumer.query.diffmodel import Diff
from metatrail.consumer.query.filters import parse_filter
from metatrail.consumer.query.impact import Impact
from metatrail.consumer.query.store import Store

__all__ = [
    "Artifact",
    "Comparison",
    "Context",
    "Diff",
    "Edge",
    "Execution",
    "Impact",
    "LineageGraph",
    "MetricHistoryRow",
    "MetricPoint",
    "Page",
    "RunColumn",
    "Store",
    "parse_filter",
]
