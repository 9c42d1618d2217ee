"""``/artifacts``, ``/executions``, ``/contexts``: the filter language in a search box
(a malformed filter is shown at its position), sortable columns, a column chooser for
properties and metrics, and keyset paging on the server (a page costs the same on the
100,000th row as on the first: nothing loads the whole table).

URL state: ``filter``, ``order`` (``name``, ``-created_at``, ``properties.lr``...),
``size``, ``page`` (the API's sealed page token), ``at`` (the first row's number, for
display), ``cols`` (extra columns: ``properties.K``, ``metrics.K``), ``retired``;
``count=1`` adds the number of matches (the page asks for it after it shows: a filter
that matches thousands costs a count the first rows need not wait for).
"""

from __future__ import annotations

from typing import Any

from metatrail.consumer.server.paging import decode_page_token, encode_page_token, query_scope
from metatrail.consumer.web.ids import short_ids
from metatrail.consumer.web.pages import View
from metatrail.schemas.errors import FilterError

#: Rows per page: default and most.
PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
#: Matches counted at most: beyond, the table says "10,000+" (an exact count of a large
#: table reads all of it on every page).
COUNT_LIMIT = 10_000
#: Most extra columns.
MAX_COLUMNS = 30
#: The fixed columns of each kind: (key, heading).
BASE_COLUMNS = {
    "artifact": [("id", "id"), ("type", "type"), ("name", "name"), ("version", "version"), ("state", "state"),
                 ("uri", "uri"), ("created_at", "created")],
    "execution": [("id", "id"), ("type", "type"), ("name", "name"), ("state", "state"), ("started_at", "started"),
                  ("duration", "duration")],
    "context": [("id", "id"), ("type", "type"), ("name", "name"), ("created_at", "created")],
}
#: Columns that sort (the rest are derived).
SORTABLE = {"id", "type", "name", "version", "state", "uri", "created_at", "started_at"}
EXAMPLES = {
    "artifact": "type = 'Model' AND properties.accuracy > 0.8",
    "execution": "type = 'Trainer' AND state = 'COMPLETE'",
    "context": "type = 'Run' AND name LIKE 'nightly-%'",
}


def _columns(view: View) -> list[str]:
    cols = []
    for col in view.list_arg("cols", MAX_COLUMNS):
        section, _, key = col.partition(".")
        if section not in ("properties", "custom_properties", "metrics") or not key:
            raise FilterError(f"cols: {col!r} is not properties.KEY, custom_properties.KEY or metrics.KEY")
        cols.append(col)
    return cols


def _metric_cells(view: View, ids: list[str]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """id -> metric key -> last value, and every metric key these executions logged."""
    if not ids:
        return {}, []
    comparison = view.store.compare(ids)
    cells: dict[str, dict[str, Any]] = {i: {} for i in ids}
    for key, values in comparison.metrics.items():
        for column, value in zip(comparison.columns, values):
            if value is not None:
                cells[column.id][key] = value
    return cells, sorted(comparison.metrics)


def _cells(items: list[dict[str, Any]], cols: list[str],
           metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """id -> chosen column -> value."""
    cells: dict[str, dict[str, Any]] = {}
    for item in items:
        row: dict[str, Any] = {}
        for col in cols:
            section, _, key = col.partition(".")
            row[col] = metrics.get(item["id"], {}).get(key) if section == "metrics" else item.get(section, {}).get(key)
        cells[item["id"]] = row
    return cells


def table(view: View, kind: str, plural: str) -> dict[str, Any]:
    store = view.store
    filter_text = view.arg("filter")
    order = view.arg("order", max_length=300)
    size = view.int_arg("size", PAGE_SIZE, 1, MAX_PAGE_SIZE)
    at = view.int_arg("at", 1, 1, 10**12)
    retired = view.flag("retired")
    cols = _columns(view)
    data: dict[str, Any] = {
        "title": plural.capitalize(), "kind": kind, "plural": plural, "filter": filter_text or "", "order": order or "",
        "size": size, "at": at, "retired": retired, "cols": cols, "columns": BASE_COLUMNS[kind],
        "sortable": sorted(SORTABLE), "example": EXAMPLES[kind], "items": [], "total": None, "total_capped": False,
        "next_page": None, "error": None, "choices": [], "cells": {}, "short": {}}
    scope = query_scope(kind, filter_text, order, retired)
    try:
        token = view.arg("page", max_length=4096)
        cursor = decode_page_token(token, scope) if token else None
        page = store.find(kind, filter_text, order_by=order, limit=size, cursor=cursor,  # type: ignore[arg-type]
                          include_retired=retired)
        total: int | None = at - 1 + len(page.items)  # known without counting on the last page
        if page.next_cursor:  # otherwise counted only when asked (the page fetches it after it shows)
            total = store.count(kind, filter_text, include_retired=retired,  # type: ignore[arg-type]
                                limit=COUNT_LIMIT + 1) if view.flag("count") else None
    except FilterError as exc:
        data["error"] = {"message": str(exc), "position": exc.position}
        return data
    items = [n.to_json() for n in page.items]
    ids = [n["id"] for n in items]
    metrics, metric_keys = _metric_cells(view, ids) if kind == "execution" else ({}, [])
    keys = {f"properties.{k}" for n in items for k in n.get("properties", {})}
    keys |= {f"custom_properties.{k}" for n in items for k in n.get("custom_properties", {})}
    keys |= {f"metrics.{k}" for k in metric_keys}
    data.update(items=items, total=total, total_capped=total is not None and total > COUNT_LIMIT,
                cells=_cells(items, cols, metrics), choices=sorted(keys | set(cols)),
                next_page=encode_page_token(page.next_cursor, scope) if page.next_cursor else None,
                short=short_ids(store, ids))
    return data


def artifacts(view: View) -> dict[str, Any]:
    return table(view, "artifact", "artifacts")


def executions(view: View) -> dict[str, Any]:
    return table(view, "execution", "executions")


def contexts(view: View) -> dict[str, Any]:
    return table(view, "context", "contexts")


PAGES = [("/artifacts", "table.html", artifacts), ("/executions", "table.html", executions),
         ("/contexts", "table.html", contexts)]
