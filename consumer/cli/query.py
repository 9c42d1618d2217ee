"""``metatrail ls | show | lineage | retire``: query the lineage graph.

Every command reads ``--url`` or ``METATRAIL_STORE_URL`` (a missing store is reported, never
created) and prints rich tables and trees for people or ``--json`` for machines. Ids are
taken as full ids or unambiguous prefixes; tables print each id as its short form (the
shortest prefix, 8+ characters, that names it alone in the store: ``Store.short_ids``),
``--json`` prints full ids. Bad filters and unknown ids raise ``FilterError`` /
``NotFoundError``, which ``main()`` prints as one line.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import typer
from rich.table import Table
from rich.tree import Tree

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import add_id_column, console, print_json, short_time
from metatrail.consumer.query.domain import Artifact, Context, Execution, LineageGraph
from metatrail.consumer.query.store import MAX_PAGE, Store
from metatrail.schemas.errors import FilterError
from metatrail.schemas.settings import load_settings

_KINDS = {"artifacts": "artifact", "executions": "execution", "contexts": "context",
          "artifact": "artifact", "execution": "execution", "context": "context"}
URL_OPTION = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL).")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON (full ids).")


def open_store(url: str | None) -> Store:
    """The store at ``--url`` or ``METATRAIL_STORE_URL``; ``StoreNotFoundError`` (one line,
    nothing created) when there is none yet. RUNNING executions silent for longer than
    METATRAIL_EXECUTION_STALE_AFTER_S are shown stale."""
    settings = load_settings()
    return Store.open(url or settings.store_url, stale_after=timedelta(seconds=settings.execution_stale_after_s))


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
    limit: int = typer.Option(50, "--limit", min=1, max=MAX_PAGE, help="Rows per page."),
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
    store = open_store(url)
    try:
        if count:
            n = store.count(node_kind, filter, include_retired=include_all)  # type: ignore[arg-type]
            print_json({"count": n}) if as_json else console.print(n)
            return
        page = store.find(node_kind, filter, order_by=order_by, limit=limit, cursor=cursor,  # type: ignore[arg-type]
                          include_retired=include_all)
        if as_json:
            print_json(page.to_json())
            return
        parents = [p for n in page.items if isinstance(n, Context) for p in n.parent_ids]
        short = store.short_ids([n.id for n in page.items] + parents)
    finally:
        store.close()
    table = Table(title=f"{kind} ({len(page.items)})")
    add_id_column(table, "id", (short[n.id] for n in page.items))
    for col in ("type", "name", "state" if node_kind != "context" else "parents", "created", "properties"):
        table.add_column(col, overflow="fold")
    for n in page.items:
        third = n.state if not isinstance(n, Context) else ", ".join(short[p] for p in n.parent_ids)
        if isinstance(n, Execution) and n.stale:
            third += " (stale)"
        table.add_row(short[n.id], n.type or "", n.name or "", third, short_time(n.created_at), _props(n))
    console.print(table)
    if page.next_cursor:
        console.print(f"more: --cursor {page.next_cursor}", soft_wrap=True)


#: Fields of ``show`` that hold another node's id (printed short).
_ID_FIELDS = ("cached_from",)


@app.command("show")
def show(
    node_id: str = typer.Argument(..., help="Artifact, execution or context id (or unambiguous prefix)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Show one artifact, execution or context, with its metrics."""
    store = open_store(url)
    try:
        node = store.get(node_id)
        metrics = store.metrics(node.id) if not isinstance(node, Artifact) else []
        refs = [getattr(node, f) for f in _ID_FIELDS if getattr(node, f, None)]
        short = store.short_ids(refs + list(getattr(node, "parent_ids", ()))) if not as_json else {}
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
        elif key in _ID_FIELDS and value:
            table.add_row(key, short[value])
        elif key == "parent_ids" and value:
            table.add_row(key, ", ".join(short[p] for p in value))
        elif value not in (None, {}, []):
            table.add_row(key, str(value))
    for m in metrics:
        table.add_row(f"metric {m.key}" + (f" @{m.step}" if m.step is not None else ""), repr(m.value))
    console.print(table)


def _label(node: Artifact | Execution, short: dict[str, str]) -> str:
    marker = "▣" if node.kind == "artifact" else "⚙"
    extra = f" {node.uri}" if isinstance(node, Artifact) and node.uri else ""
    flags = " (placeholder)" if node.is_placeholder else ""
    if isinstance(node, Execution) and node.stale:
        flags += f" (stale: {node.stale})"
    return f"{marker} {node.type or '?'} {node.name or ''} [{node.state}] {short[node.id]}{extra}{flags}"


def _tree(graph: LineageGraph, direction: str, short: dict[str, str]) -> Tree:
    nodes = {n.id: n for n in graph.nodes}
    nexts: dict[str, list[str]] = {}
    for e in graph.edges:
        a, b = (e.target, e.source) if direction == "upstream" else (e.source, e.target)
        nexts.setdefault(a, []).append(b)
    root = Tree(_label(nodes[graph.start_id], short))
    shown: set[str] = {graph.start_id}

    def grow(branch: Tree, node_id: str) -> None:
        for nxt in sorted(nexts.get(node_id, []), key=lambda i: (graph.depths.get(i, 0), i)):
            if nxt not in nodes or graph.depths.get(nxt, 0) <= graph.depths.get(node_id, 0):
                continue
            if nxt in shown:
                branch.add(f"↺ {nodes[nxt].name or short[nxt]} (see above)")
                continue
            shown.add(nxt)
            grow(branch.add(_label(nodes[nxt], short)), nxt)

    grow(root, graph.start_id)
    return root


@app.command("lineage")
def lineage(
    node_id: str = typer.Argument(..., help="Artifact or execution id (or unambiguous prefix)."),
    up: bool = typer.Option(False, "--up", help="What it was made from (default)."),
    down: bool = typer.Option(False, "--down", help="What was made from it."),
    both: bool = typer.Option(False, "--both", help="Both directions."),
    hops: int = typer.Option(50, "--hops", min=0, help="Hop limit (edges, 0 or more)."),
    limit: int = typer.Option(10_000, "--limit", min=1, help="Node limit (1 or more)."),
    types: list[str] = typer.Option([], "--type", help="Keep only nodes of this type (repeatable)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Trace lineage from an artifact or execution; prints a tree or --json."""
    if sum((up, down, both)) > 1:
        raise FilterError("lineage: give at most one of --up, --down, --both")
    direction = "both" if both else "downstream" if down else "upstream"
    store = open_store(url)
    try:
        graph = store.lineage(node_id, direction, max_hops=hops, types=types or None, limit=limit)  # type: ignore[arg-type]
        short = store.short_ids([n.id for n in graph.nodes]) if not as_json else {}
    finally:
        store.close()
    if as_json:
        print_json(graph.to_json())
        return
    if direction == "both":
        console.print("upstream:")
        console.print(_tree(graph, "upstream", short))
        console.print("downstream:")
        console.print(_tree(graph, "downstream", short))
    else:
        console.print(_tree(graph, direction, short))
    console.print(f"{len(graph.nodes)} nodes, {len(graph.edges)} edges" + (" — TRUNCATED (raise --hops/--limit)" if graph.truncated else ""))


@app.command("retire")
def retire(
    artifact_id: str = typer.Argument(..., help="Artifact id (or unambiguous prefix)."),
    state: str = typer.Option("DELETED", "--state", help="DELETED or ABANDONED (LIVE revives)."),
    reason: str | None = typer.Option(None, "--reason", help="Why (kept with the artifact)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Retire an artifact by applying an artifact.state_changed event to the store; queries
    then leave it out unless --all."""
    from metatrail.consumer.apply import apply_events
    from metatrail.consumer.store.engine import writing
    from metatrail.schemas.events import ArtifactStateChanged

    if state not in ("DELETED", "ABANDONED", "MARKED_FOR_DELETION", "LIVE"):
        raise FilterError(f"retire: --state must be DELETED, ABANDONED, MARKED_FOR_DELETION or LIVE, got {state!r}")
    store = open_store(url)
    try:
        full_id = store.artifact(artifact_id).id  # NotFoundError for an unknown id or prefix
        event = ArtifactStateChanged(artifact_id=uuid.UUID(full_id), state=state, reason=reason)  # type: ignore[arg-type]
        with writing(store.engine) as writer:
            report = apply_events(writer, [event])
        node = store.artifact(full_id)
        short = store.short_ids([full_id])[full_id] if not as_json else full_id
    finally:
        store.close()
    if as_json:
        print_json({"id": node.id, "state": node.state, "reason": node.state_reason, "event_id": str(event.event_id),
                    "applied": report.applied})
    else:
        console.print(f"{short} ({node.name or node.type or 'artifact'}) is now {node.state}")
