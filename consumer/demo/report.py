"""What the demo prints at the end, read back from the store: the newest model's lineage,
the two runs' per-slice metrics side by side, why day 2's model differs (the verdict of
``metatrail diff``), and where to look next."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from metatrail.consumer.cli.diffview import verdict_lines
from metatrail.consumer.demo.components import PIPELINE
from metatrail.consumer.query.domain import Artifact, Execution, LineageGraph
from metatrail.consumer.query.store import Store
from metatrail.schemas.urls import mask_url
from metatrail.schemas.settings import load_settings

_STATE_STYLE = {"COMPLETE": "green", "CACHED": "cyan", "FAILED": "red", "RUNNING": "yellow"}


def _short_uri(uri: str | None) -> str:
    if not uri:
        return ""
    try:
        return os.path.relpath(uri)
    except ValueError:
        return uri


def _label(node: Artifact | Execution) -> str:
    if isinstance(node, Execution):
        style = _STATE_STYLE.get(node.state, "white")
        return f"[bold]{node.type}[/] [{style}]{node.state}[/]"
    digest = (node.digest or "").split(":")[-1][:10]
    extra = f" [dim]sha256:{digest}[/]" if digest else ""
    return f"[magenta]{node.type}[/] {node.name or ''} [dim]{_short_uri(node.uri)}[/]{extra}"


def lineage_tree(graph: LineageGraph) -> Tree:
    """Upstream tree: an artifact's producing execution, that execution's inputs, and so
    on back to the data. A node reached twice is shown once, then referred to."""
    nodes = {n.id: n for n in graph.nodes}
    producers: dict[str, list[str]] = {}
    inputs: dict[str, list[tuple[str, str]]] = {}
    for e in graph.edges:
        if e.kind == "output":
            producers.setdefault(e.target, []).append(e.source)
        else:
            inputs.setdefault(e.target, []).append((e.source, e.role))
    root = Tree(_label(nodes[graph.start_id]))
    seen: set[str] = {graph.start_id}

    def grow(branch: Tree, node_id: str) -> None:
        node = nodes[node_id]
        children: list[tuple[str, str]]
        if isinstance(node, Execution):
            children = sorted(inputs.get(node_id, []), key=lambda c: c[1])
        else:
            children = [(p, "") for p in producers.get(node_id, [])]
        for child_id, role in children:
            if child_id not in nodes:
                continue
            prefix = f"[dim]{role}:[/] " if role else ""
            if child_id in seen:
                branch.add(f"{prefix}{_label(nodes[child_id])} [dim](see above)[/]")
                continue
            seen.add(child_id)
            grow(branch.add(prefix + _label(nodes[child_id])), child_id)

    grow(root, graph.start_id)
    if graph.truncated:
        root.add("[yellow]… truncated (use --hops)[/]")
    return root


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def slice_table(evaluations: list[tuple[str, dict[str, Any]]], drifted: set[str]) -> Table:
    """Per-slice AUC and accuracy of each run's evaluation, with the change."""
    table = Table(title="Per-slice metrics (eval split of each day)", title_justify="left")
    table.add_column("slice")
    for name, _ in evaluations:
        table.add_column(f"AUC {name}", justify="right")
    if len(evaluations) == 2:
        table.add_column("Δ AUC", justify="right")
    for name, _ in evaluations:
        table.add_column(f"acc {name}", justify="right")
    slices = ["overall"] + sorted(evaluations[-1][1]["slices"])
    for s in slices:
        rows = [ev["overall"] if s == "overall" else ev["slices"].get(s, {}) for _, ev in evaluations]
        aucs = [r.get("auc") for r in rows]
        cells = [_fmt(a) for a in aucs]
        if len(evaluations) == 2:
            if aucs[0] is None or aucs[1] is None:
                cells.append("—")
            else:
                delta = aucs[1] - aucs[0]
                style = "red" if delta < -0.05 else ("green" if delta > 0.02 else "")
                cells.append(f"[{style}]{delta:+.3f}[/]" if style else f"{delta:+.3f}")
        cells += [_fmt(r.get("accuracy")) for r in rows]
        label = f"[bold red]{s} (drift)[/]" if s in drifted else s
        table.add_row(label, *cells)
    return table


def evaluation_from_store(store: Store, execution_id: str) -> dict[str, Any]:
    """An Evaluator execution's metrics as ``{"overall": {...}, "slices": {name: {...}}}``
    (for a CACHED execution, those of the execution it reused)."""
    ex = store.get(execution_id)
    if isinstance(ex, Execution) and ex.state == "CACHED" and ex.cached_from:
        execution_id = ex.cached_from
    out: dict[str, Any] = {"overall": {}, "slices": {}}
    for point in store.metrics(execution_id):
        metric, _, where = point.key.partition("/")
        target = out["slices"].setdefault(where, {}) if where else out["overall"]
        target[metric] = point.value
    return out


def print_summary(console: Console, store_url: str, results: list[Any], model_id: str | None) -> None:
    """The end of the demo: lineage, comparison, why day 2's model differs (the diff's
    verdict), where the store is, what to run next."""
    models = [r.model_id for r in results if r.model_id]
    story = None
    with Store.open(store_url) as store:
        if model_id:
            graph = store.lineage(model_id, "upstream", max_hops=20)
            console.print()
            console.print("[bold]Lineage of the newest model, back to its data[/]")
            console.print(lineage_tree(graph))
        evaluations = [
            (f"day {r.day}", evaluation_from_store(store, r.execution_ids["Evaluator"]))
            for r in results
            if "Evaluator" in r.execution_ids
        ]
        evaluator_ids = [r.execution_ids["Evaluator"] for r in results if "Evaluator" in r.execution_ids]
        if len(models) == 2:
            story = store.diff(models[0], models[1])
        raw = store.latest("ImpressionLog", context=PIPELINE)
        named = [*evaluator_ids, *models, *([model_id] if model_id else []), *([raw.id] if raw else [])]
        short = store.short_ids(named)  # as tables print them
    drifted = {
        a["slice"].split("=", 1)[-1]
        for r in results
        for a in r.anomalies
        if a["kind"] == "distribution_drift" and a["slice"] != "all"
    }
    console.print()
    if evaluations:
        console.print(slice_table(evaluations, drifted))
    for r in results:
        verdict = "[green]deployed[/]" if r.pushed else "[red]not deployed[/]"
        console.print(f"Pusher, day {r.day}: {verdict} — {r.push_reason}", soft_wrap=True)
    if story is not None:
        console.print()
        console.print("[bold]Why day 2's model differs from day 1's[/] (metatrail diff, on the lineage alone)")
        for line in verdict_lines(story):
            console.print(line, soft_wrap=True)
        unchanged = [s.type for s in story.steps if s.kind == "lineage" and s.status in ("same", "unchanged")]
        if unchanged:
            console.print("  [dim]unchanged:[/] " + ", ".join(f"{t} (served from the cache)" if any(
                s.type == t and s.cache is not None and s.cache.b_reused_a for s in story.steps) else t
                for t in unchanged if t), soft_wrap=True)
    console.print()
    database = store_url.split("///", 1)[-1] if store_url.startswith("sqlite") else store_url
    where = Path(database).resolve() if store_url.startswith("sqlite") else mask_url(database)
    console.print(f"[bold]Store:[/] {where}", soft_wrap=True)
    console.print("[bold]Explore it:[/]")
    evaluators = " ".join(short[i] for i in evaluator_ids)
    cmds = []
    if len(models) == 2:
        cmds.append(f"metatrail diff {short[models[0]]} {short[models[1]]}")
    if raw is not None:
        cmds.append(f"metatrail impact {short[raw.id]} --dry-run")
    cmds += [
        "metatrail ls executions --filter \"context.name = 'shoe-ctr'\"",
        "metatrail ls artifacts --filter \"type = 'ExampleAnomalies' AND properties.drift = TRUE\"",
    ]
    if model_id:
        cmds.append(f"metatrail lineage {short[model_id]} --up")
    cmds.append(f"metatrail compare {evaluators}")
    cmds.append("metatrail compare --history 'auc/%' --exec-type Evaluator --context shoe-ctr")
    for c in cmds:
        console.print(f"  [cyan]{c}[/]", soft_wrap=True)
    url = ui_url(short[model_id] if model_id else None)  # pages take id prefixes too
    console.print(f"[bold]In the browser:[/] run [cyan]metatrail serve[/], then open {url}", soft_wrap=True)


def ui_url(model_id: str | None) -> str:
    """The web UI's page to open first: the newest model's lineage (``metatrail serve``
    on the configured host and port)."""
    settings = load_settings()
    host = settings.server_host if settings.server_host not in ("0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    base = f"http://{host}:{settings.server_port}"
    return f"{base}/lineage/{model_id}" if model_id else f"{base}/"
