"""``metatrail ls | show | lineage | compare | retire``: query the lineage graph.

Every command reads ``--url`` or ``METATRAIL_STORE_URL`` and prints rich tables and trees
for people or ``--json`` for machines. Bad filters and unknown ids raise ``FilterError`` /
``NotFoundError``, which ``main()`` prints as one line.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import typer
from rich.table import Table
from rich.tree import Tree

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import console, print_json
from metatrail.consumer.query.domain import Artifact, Context, Execution, LineageGraph
from metatrail.consumer.query.store import Store
from metatrail.schemas.errors import FilterError, NotFoundError
from metatrail.schemas.settings import load_settings

_KINDS = {"artifacts": "artifact", "executions": "execution", "contexts": "context",
          "artifact": "artifact", "execution": "execution", "context": "context"}
URL_OPTION = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL).")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


def _open(url: str | None) -> Store:
    return Store.open(url or load_settings().store_url)


def _short_time(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def _props(node: Any) -> str:
    items = [f"{k}={v!r}" for k, v in node.properties.items()]
    items += [f"{k}={v!r}" for k, v in node.custom_properties.items()]
    text = ", ".join(items)
    return text if len(text) <= 60 else text[:57] + "..."


@app.command("ls")
def ls(
    kind: str = typer.Argument(..., help="artifacts, executions or contexts."),
    filter: str | None = typer.Option(None, "--filter", "-f", help="Filter, e.g. \"type = 'Model' AND properties.accuracy > 0.9\"."),
    order_by: str | None = typer.Option(None, "--order-by", help="Field [asc|desc], e.g. 'created_at desc'."),
    limit: int = typer.Option(50, "--limit", help="Rows per page."),
    cursor: str | None = typer.Option(None, "--cursor", help="next_cursor of the previous page."),
    include_all: bool = typer.Option(False, "--all", help="Include placeholders and DELETED/ABANDONED artifacts."),
    count: bool = typer.Option(False, "--count", help="Print only how many match."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List artifacts, executions or contexts matching a filter."""
    node_kind = _KINDS.get(kind)
    if node_kind is None:
        raise FilterError(f"ls: expected artifacts, executions or contexts, got {kind!r}")
    store = _open(url)
    try:
        if count:
            n = store.count(node_kind, filter, include_retired=include_all)  # type: ignore[arg-type]
            print_json({"count": n}) if as_json else console.print(n)
            return
        page = store.find(node_kind, filter, order_by=order_by, limit=limit, cursor=cursor,  # type: ignore[arg-type]
                          include_retired=include_all)
    finally:
        store.close()
    if as_json:
        print_json(page.to_json())
        return
    table = Table(title=f"{kind} ({len(page.items)})")
    for col in ("id", "type", "name", "state" if node_kind != "context" else "parents", "created", "properties"):
        table.add_column(col, overflow="fold")
    for n in page.items:
        third = n.state if not isinstance(n, Context) else ", ".join(p[:8] for p in n.parent_ids)
        table.add_row(n.id, n.type or "", n.name or "", third, _short_time(n.created_at), _props(n))
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}")


@app.command("show")
def show(
    node_id: str = typer.Argument(..., help="Artifact, execution or context id."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one artifact, execution or context, with its metrics."""
    store = _open(url)
    try:
        node = store.get(node_id)
        metrics = store.metrics(node_id) if not isinstance(node, Artifact) else []
    finally:
        store.close()
    if as_json:
        data = node.to_json()
        if not isinstance(node, Artifact):
            data["metrics"] = [m.to_json() for m in metrics]
        print_json(data)
        return
    table = Table(title=f"{node.kind} {node.id}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in node.to_json().items():
        if key in ("properties", "custom_properties"):
            for k, v in value.items():
                table.add_row(f"{key}.{k}", repr(v))
        elif value not in (None, {}, []):
            table.add_row(key, str(value))
    for m in metrics:
        table.add_row(f"metric {m.key}" + (f" @{m.step}" if m.step is not None else ""), repr(m.value))
    console.print(table)


def _label(node: Artifact | Execution, hops: int | None) -> str:
    marker = "▣" if node.kind == "artifact" else "⚙"
    extra = f" {node.uri}" if isinstance(node, Artifact) and node.uri else ""
    flags = " (placeholder)" if node.is_placeholder else ""
    return f"{marker} {node.type or '?'} {node.name or ''} [{node.state}] {node.id}{extra}{flags}"


def _tree(graph: LineageGraph, direction: str) -> Tree:
    nodes = {n.id: n for n in graph.nodes}
    nexts: dict[str, list[str]] = {}
    for e in graph.edges:
        a, b = (e.target, e.source) if direction == "upstream" else (e.source, e.target)
        nexts.setdefault(a, []).append(b)
    root = Tree(_label(nodes[graph.start_id], 0))
    shown: set[str] = {graph.start_id}

    def grow(branch: Tree, node_id: str) -> None:
        for nxt in sorted(nexts.get(node_id, []), key=lambda i: (graph.depths.get(i, 0), i)):
            if nxt not in nodes or graph.depths.get(nxt, 0) <= graph.depths.get(node_id, 0):
                continue
            if nxt in shown:
                branch.add(f"↺ {nodes[nxt].name or nxt} (see above)")
                continue
            shown.add(nxt)
            grow(branch.add(_label(nodes[nxt], graph.depths.get(nxt))), nxt)

    grow(root, graph.start_id)
    return root


@app.command("lineage")
def lineage(
    node_id: str = typer.Argument(..., help="Artifact or execution id."),
    up: bool = typer.Option(False, "--up", help="What it was made from (default)."),
    down: bool = typer.Option(False, "--down", help="What was made from it."),
    both: bool = typer.Option(False, "--both", help="Both directions."),
    hops: int = typer.Option(50, "--hops", help="Hop limit (edges)."),
    limit: int = typer.Option(10_000, "--limit", help="Node limit."),
    types: list[str] = typer.Option([], "--type", help="Keep only nodes of this type (repeatable)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Trace lineage from an artifact or execution; prints a tree or --json."""
    if sum((up, down, both)) > 1:
        raise FilterError("lineage: give at most one of --up, --down, --both")
    direction = "both" if both else "downstream" if down else "upstream"
    store = _open(url)
    try:
        graph = store.lineage(node_id, direction, max_hops=hops, types=types or None, limit=limit)  # type: ignore[arg-type]
    finally:
        store.close()
    if as_json:
        print_json(graph.to_json())
        return
    if direction == "both":
        console.print("upstream:")
        console.print(_tree(graph, "upstream"))
        console.print("downstream:")
        console.print(_tree(graph, "downstream"))
    else:
        console.print(_tree(graph, direction))
    console.print(f"{len(graph.nodes)} nodes, {len(graph.edges)} edges" + (" — TRUNCATED (raise --hops/--limit)" if graph.truncated else ""))


@app.command("compare")
def compare(
    ids: list[str] = typer.Argument(None, help="Run (context) or execution ids."),
    metric: list[str] = typer.Option([], "--metric", help="Only these metrics (repeatable)."),
    history: str | None = typer.Option(None, "--history", help="A metric key (LIKE pattern) to follow over time instead."),
    exec_type: str | None = typer.Option(None, "--exec-type", help="With --history: only executions of this type."),
    context: str | None = typer.Option(None, "--context", help="With --history: pipeline/run id or name."),
    days: float | None = typer.Option(None, "--days", help="With --history: only the last N days."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Params and metrics of runs side by side, or a metric's history (--history)."""
    store = _open(url)
    try:
        if history is not None:
            since = datetime.now(timezone.utc) - timedelta(days=days) if days is not None else None
            rows = store.metric_history(history, execution_type=exec_type, context=context, since=since, key_like=True)
            if as_json:
                print_json([r.to_json() for r in rows])
                return
            table = Table(title=f"history of {history}")
            for col in ("time", "run", "execution", "key", "step", "value"):
                table.add_column(col, overflow="fold")
            for r in rows:
                table.add_row(_short_time(r.timestamp), r.context_name or "", r.execution_name or r.execution_id or "",
                              r.key, "" if r.step is None else str(r.step), f"{r.value:.6g}")
            console.print(table)
            return
        if not ids:
            raise FilterError("compare: give run or execution ids, or --history KEY")
        result = store.compare(ids, metrics=metric or None)
    finally:
        store.close()
    if as_json:
        print_json(result.to_json())
        return
    table = Table(title="comparison")
    table.add_column("")
    for c in result.columns:
        table.add_column(c.name or c.id[:8], overflow="fold")
    for section, data in (("param", result.params), ("metric", result.metrics)):
        for key, values in data.items():
            table.add_row(f"{section} {key}", *("" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v) for v in values))
    console.print(table)


@app.command("retire")
def retire(
    artifact_id: str = typer.Argument(..., help="Artifact id."),
    state: str = typer.Option("DELETED", "--state", help="DELETED or ABANDONED (LIVE revives)."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept with the artifact)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Retire an artifact by applying an artifact.state_changed event to the store; queries
    then leave it out unless --all."""
    from metatrail.consumer.apply import apply_events
    from metatrail.schemas.events import ArtifactStateChanged

    if state not in ("DELETED", "ABANDONED", "MARKED_FOR_DELETION", "LIVE"):
        raise FilterError(f"retire: --state must be DELETED, ABANDONED, MARKED_FOR_DELETION or LIVE, got {state!r}")
    store = _open(url)
    try:
        full_id = store.artifact(artifact_id).id  # NotFoundError for an unknown id or prefix
        event = ArtifactStateChanged(artifact_id=uuid.UUID(full_id), state=state, reason=reason)  # type: ignore[arg-type]
        report = apply_events(store.engine, [event])
        node = store.artifact(full_id)
    finally:
        store.close()
    if as_json:
        print_json({"id": node.id, "state": node.state, "reason": node.state_reason, "event_id": str(event.event_id),
                    "applied": report.applied})
    else:
        console.print(f"{node.id} is now {node.state}")
