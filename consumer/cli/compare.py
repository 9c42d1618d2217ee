"""``metatrail compare``: runs or executions side by side, or a metric over time.

Each column is headed by the run's or execution's name over its short id; timing (start,
end, duration) and state are attributes of the column, above the params and metrics.
``--json`` prints ``Store.compare`` / ``Store.metric_history`` as they are (full ids).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import typer
from rich.table import Table

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import console, duration, print_json, short_time
from metatrail.consumer.cli.query import JSON_OPTION, URL_OPTION, open_store
from metatrail.consumer.query.domain import Comparison, MetricHistoryRow
from metatrail.schemas.errors import FilterError


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def comparison_table(result: Comparison, short: dict[str, str]) -> Table:
    """Attributes, then params, then metrics; one column per compared node, headed by its
    name (or type) over its short id, which never wraps."""
    table = Table(title="comparison")
    table.add_column("")
    for c in result.columns:
        table.add_column(f"{c.name or c.type or c.kind}\n{short[c.id]}", min_width=len(short[c.id]))
    attributes = {
        "kind": [c.type or c.kind for c in result.columns],
        "state": [c.state or "" for c in result.columns],
        "start": [short_time(c.started_at) for c in result.columns],
        "end": [short_time(c.ended_at) for c in result.columns],
        "duration": [duration(c.duration_s) for c in result.columns],
    }
    for name, cells in attributes.items():
        if any(cells):
            table.add_row(name, *cells)
    for section, data in (("param", result.params), ("metric", result.metrics)):
        for key, values in data.items():
            table.add_row(f"{section} {key}", *(_cell(v) for v in values))
    return table


def history_table(key: str, rows: list[MetricHistoryRow], short: dict[str, str]) -> Table:
    table = Table(title=f"history of {key}")
    for col in ("time", "run", "execution", "key", "step", "value"):
        table.add_column(col, overflow="fold", no_wrap=col in ("run", "execution"))
    for r in rows:
        run = r.context_name or (short.get(r.context_id, "") if r.context_id else "")
        execution = r.execution_name or (short.get(r.execution_id, "") if r.execution_id else "")
        table.add_row(short_time(r.timestamp), run, execution, r.key, "" if r.step is None else str(r.step),
                      f"{r.value:.6g}")
    return table


@app.command("compare")
def compare(
    ids: list[str] = typer.Argument(None, help="Run (context) or execution ids, or unambiguous prefixes."),
    metric: list[str] = typer.Option([], "--metric", help="Only these metrics (repeatable)."),
    history: str | None = typer.Option(None, "--history", help="A metric key (LIKE pattern) to follow over time instead."),
    exec_type: str | None = typer.Option(None, "--exec-type", help="With --history: only executions of this type."),
    context: str | None = typer.Option(None, "--context", help="With --history: pipeline/run name, id or id prefix."),
    days: float | None = typer.Option(None, "--days", min=0.0, help="With --history: only the last N days."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Params and metrics of runs side by side, or a metric's history (--history)."""
    if history is None and not ids:
        raise FilterError("compare: give run or execution ids, or --history KEY")
    store = open_store(url)
    try:
        if history is not None:
            since = datetime.now(timezone.utc) - timedelta(days=days) if days is not None else None
            rows = store.metric_history(history, execution_type=exec_type, context=context, since=since, key_like=True)
            if as_json:
                print_json([r.to_json() for r in rows])
                return
            unnamed = [i for r in rows for i, name in ((r.execution_id, r.execution_name), (r.context_id, r.context_name))
                       if i and not name]
            console.print(history_table(history, rows, store.short_ids(unnamed)))
            return
        result = store.compare(ids, metrics=metric or None)
        if as_json:
            print_json(result.to_json())
            return
        short = store.short_ids([c.id for c in result.columns])
    finally:
        store.close()
    console.print(comparison_table(result, short))
