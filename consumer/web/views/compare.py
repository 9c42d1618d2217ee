"""``/compare?runs=ID,ID,...``: 2 to 10 runs (or executions) side by side: params,
metrics, code version and environment, each row marked when the columns differ;
``only=diff`` keeps the rows that differ (the state is in the URL, so a link shows the
same); ``chart=KEY`` overlays that metric's curves."""

from __future__ import annotations

from typing import Any

from metatrail.consumer.web.ids import short_ids
from metatrail.consumer.web.pages import View
from metatrail.schemas.errors import FilterError

MAX_RUNS = 10


def chart_keys(columns: list[dict[str, Any]], metric_keys: list[str]) -> list[str]:
    """Metric keys a chart can ask for: as logged (a run's rows are prefixed with the
    logging execution's type, ``Trainer.loss``: the chart takes ``loss``)."""
    keys: set[str] = set()
    runs = any(c["kind"] == "context" for c in columns)
    for key in metric_keys:
        keys.add(key)
        if runs and "." in key:
            keys.add(key.split(".", 1)[1])
    return sorted(keys)


def compare(view: View) -> dict[str, Any]:
    store = view.store
    refs = view.list_arg("runs", MAX_RUNS)
    if not refs:
        raise FilterError("runs: give 2 to 10 run or execution ids, e.g. /compare?runs=ID,ID")
    ids = [store.resolve(ref, ("context", "execution"))[1] for ref in refs]
    only_diff = view.arg("only", max_length=10) == "diff"
    result = store.compare(ids)
    data = result.to_json()
    rows: list[dict[str, Any]] = []
    for section in result.SECTIONS:
        for key, values in data[section].items():
            differs = any(v != values[0] for v in values[1:])
            if differs or not only_diff:
                rows.append({"section": section, "key": key, "values": values, "differs": differs})
    differing = sum(1 for s in result.SECTIONS for v in data[s].values() if any(x != v[0] for x in v[1:]))
    keys = chart_keys(data["columns"], list(data["metrics"]))
    chart = view.arg("chart", max_length=255)
    return {"title": f"Compare {len(ids)} runs", "columns": data["columns"], "rows": rows,
            "only": "diff" if only_diff else "", "total_rows": sum(len(data[s]) for s in result.SECTIONS),
            "differing_rows": differing, "runs": ids, "chart_keys": keys, "chart": chart if chart in keys else None,
            "short": short_ids(store, ids)}


PAGES = [("/compare", "compare.html", compare)]
