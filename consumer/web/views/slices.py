"""``/slices?runs=A[,B]``: one metric per slice for one evaluation, or two side by side
with the change, sorted (worst change first), small slices flagged (TFMA's slicing
browser).

Slices are read from metric keys ``<metric>/<slice>`` (``auc/mens_dress``; the bare
``<metric>`` is the overall value), as the demo's Evaluator and TFMA-style evaluators
log them. A slice's size is its ``examples/<slice>`` (or ``count/``, ``n/``) metric when
logged; a slice is flagged small below ``min`` examples (default 100) or below 1 % of the
overall count. A run (context) stands for its newest execution that logged sliced
metrics; a CACHED execution for the one it reused.
"""

from __future__ import annotations

import math
from typing import Any

from metatrail.consumer.query.domain import Execution
from metatrail.consumer.query.store import Store
from metatrail.consumer.web.ids import short_ids
from metatrail.consumer.web.pages import View
from metatrail.schemas.errors import FilterError, NotFoundError

SIZE_METRICS = ("examples", "count", "n")
#: Executions of a run searched for sliced metrics.
RUN_MEMBERS = 200
SORTS = ("delta", "-delta", "value", "-value", "slice", "size")


def _sliced(store: Store, execution_id: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(overall metric -> value, slice -> metric -> value): the last value of each key."""
    overall: dict[str, float] = {}
    slices: dict[str, dict[str, float]] = {}
    for point in store.metrics(execution_id):
        metric, _, where = point.key.partition("/")
        if where:
            slices.setdefault(where, {})[metric] = point.value
        else:
            overall[metric] = point.value
    return overall, slices


def evaluation(store: Store, ref: str) -> dict[str, Any]:
    """The evaluation a reference names: the execution (or the one a CACHED execution
    reused), or a run's newest execution with sliced metrics. Raises ``NotFoundError``."""
    kind, node_id = store.resolve(ref, ("execution", "context"))
    candidates: list[Execution]
    if kind == "execution":
        candidates = [store.get(node_id, ("execution",))]  # type: ignore[list-item]
    else:
        where = "context.id = '{}'".format(node_id)
        candidates = list(store.find("execution", where, order_by="-created_at", limit=RUN_MEMBERS).items)
    for ex in candidates:
        source = ex.cached_from if ex.state == "CACHED" and ex.cached_from else ex.id
        overall, slices = _sliced(store, source)
        if slices or kind == "execution":
            return {"id": ex.id, "source": source, "type": ex.type, "name": ex.name, "state": ex.state,
                    "created_at": ex.created_at.isoformat() if ex.created_at else None, "ref": node_id,
                    "overall": overall, "slices": slices}
    raise NotFoundError(f"no execution of {ref!r} logged sliced metrics (keys like 'auc/<slice>')")


def _size(values: dict[str, float]) -> float | None:
    for name in SIZE_METRICS:
        if name in values:
            return values[name]
    return None


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def slices(view: View) -> dict[str, Any]:
    store = view.store
    refs = view.list_arg("runs", 2)
    if not refs:
        raise FilterError("runs: give one or two evaluation executions or runs, e.g. /slices?runs=ID,ID")
    evals = [evaluation(store, ref) for ref in refs]
    metrics = sorted({m for e in evals for s in e["slices"].values() for m in s} - set(SIZE_METRICS))
    metric = view.arg("metric", max_length=255) or ("auc" if "auc" in metrics else (metrics[0] if metrics else ""))
    if metric and metric not in metrics:
        raise FilterError(f"metric: {metric!r} is not logged per slice here (there is {', '.join(metrics) or 'none'})")
    min_size = view.int_arg("min", 100, 0, 10**12)
    order = view.arg("sort", max_length=10) or ("delta" if len(evals) == 2 else "value")
    if order not in SORTS:
        raise FilterError(f"sort: expected one of {', '.join(SORTS)}, got {order!r}")
    names = sorted({s for e in evals for s in e["slices"]})
    overall_size = [_size(e["overall"]) for e in evals]
    rows = []
    for name in names:
        values = [_number(e["slices"].get(name, {}).get(metric)) for e in evals]
        sizes = [_size(e["slices"].get(name, {})) for e in evals]
        delta = values[1] - values[0] if len(values) == 2 and None not in values else None  # type: ignore[operator]
        small = any(size is not None and (size < min_size or (total and size < 0.01 * total))
                    for size, total in zip(sizes, overall_size))
        rows.append({"slice": name, "values": values, "sizes": sizes, "delta": delta, "small": small})
    rows.sort(key=_sort_key(order))
    overall = [_number(e["overall"].get(metric)) for e in evals]
    overall_delta = overall[1] - overall[0] if len(overall) == 2 and None not in overall else None  # type: ignore[operator]
    return {"title": f"Per-slice {metric}", "metric": metric, "metrics": metrics, "min": min_size, "sort": order,
            "evaluations": [{k: v for k, v in e.items() if k not in ("overall", "slices")} for e in evals],
            "overall": {"values": overall, "sizes": overall_size, "delta": overall_delta},
            "rows": rows, "short": short_ids(store, [e["id"] for e in evals] + [e["source"] for e in evals])}


def _sort_key(order: str) -> Any:
    reverse = order.startswith("-")
    field = order.lstrip("-")
    big = float("inf")

    def key(row: dict[str, Any]) -> Any:
        if field == "slice":
            return row["slice"]
        if field == "size":
            sizes = [s for s in row["sizes"] if s is not None]
            return (min(sizes) if sizes else big, row["slice"])
        value = row["delta"] if field == "delta" else row["values"][-1]
        if value is None:
            return (big, row["slice"])
        return (-value if reverse else value, row["slice"])

    return key


PAGES = [("/slices", "slices.html", slices)]
