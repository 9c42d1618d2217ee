"""``/charts?runs=ID,...&key=K``: a metric over steps across runs or executions, cut down
by the server (``points``, each bucket's extremes kept) so a long series costs the
browser no more than a short one. The page's JSON twin is what the charts draw, here and
on the execution and compare pages."""

from __future__ import annotations

from typing import Any

from metatrail.consumer.web.ids import short_ids
from metatrail.consumer.web.pages import View
from metatrail.consumer.web.views.compare import chart_keys
from metatrail.schemas.errors import FilterError

MAX_RUNS, DEFAULT_POINTS, MAX_POINTS = 20, 1000, 10_000


def charts(view: View) -> dict[str, Any]:
    store = view.store
    refs = view.list_arg("runs", MAX_RUNS)
    if not refs:
        raise FilterError("runs: give one or more run or execution ids, e.g. /charts?runs=ID,ID&key=loss")
    resolved = [store.resolve(ref, ("execution", "context")) for ref in refs]
    points = view.int_arg("points", DEFAULT_POINTS, 2, MAX_POINTS)
    ids = [i for _, i in resolved]
    comparison = store.compare(ids)
    keys = chart_keys([c.to_json() for c in comparison.columns], list(comparison.metrics))
    key = view.arg("key", max_length=255) or (keys[0] if keys else None)
    series: list[dict[str, Any]] = []
    names = {c.id: f"{c.type or ''} {c.name or ''}".strip() for c in comparison.columns}
    if key:
        found = store.metric_series(key, executions=[i for k, i in resolved if k == "execution"],
                                    contexts=[i for k, i in resolved if k == "context"], max_points=points)
        owners = [s.execution_id or s.context_id or "" for s in found]
        extra = {o.id: f"{o.type or ''} {o.name or ''}".strip()
                 for o in (store.get(x) for x in owners if x not in names)}
        short = short_ids(store, owners)
        for s, owner in zip(found, owners):
            data = s.to_json()
            data["label"] = f"{names.get(owner) or extra.get(owner, '')} {short[owner]}".strip()
            data["points"] = [[p["step"], p["value"]] for p in data["points"] if p["step"] is not None
                              and isinstance(p["value"], (int, float))]
            series.append(data)
    return {"title": f"{key or 'Metrics'} over steps", "runs": ids, "key": key, "keys": keys, "points": points,
            "series": series, "short": short_ids(store, ids)}


PAGES = [("/charts", "charts.html", charts)]
