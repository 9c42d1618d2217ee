"""How a diff and an impact read at the terminal (rich). The demo's report uses
``verdict_lines`` and ``metrics_table`` too, so both tell the story the same way."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from metatrail.consumer.query.diffmodel import ArtifactPair, Diff, MetricDelta, StepPair, ValueChange
from metatrail.consumer.query.domain import Artifact, Context, Execution
from metatrail.consumer.query.impact import Impact, RetireChange
from metatrail.consumer.query.verdict import changes_text, describe_artifacts, fmt

_STATUS_STYLE = {"changed": "yellow", "added": "green", "removed": "red", "unchanged": "dim", "same": "dim"}
_KIND_NOTE = {"lineage": "", "observer": " [dim](check on the data)[/]", "consumer": " [dim](read the target)[/]"}


def short_uri(uri: str | None) -> str:
    """A local path relative to the working directory; anything else as it is."""
    if not uri:
        return ""
    if "://" in uri or not os.path.isabs(uri):
        return uri
    try:
        rel = os.path.relpath(uri)
    except ValueError:
        return uri
    return rel if not rel.startswith("../../") else uri


def node_line(label: str, node: Artifact | Execution | Context, short: Mapping[str, str] | None = None) -> str:
    """One node on one line: kind, type, name, state, (short) id, local path, creation time."""
    parts = [f"[bold]{escape(label)}[/]", node.kind, escape(node.type or "?")]
    if node.name:
        parts.append(escape(node.name))
    if isinstance(node, (Artifact, Execution)):
        parts.append(escape(f"[{node.state}]"))
    parts.append((short or {}).get(node.id, node.id))
    if isinstance(node, Artifact) and node.uri:
        parts.append(f"[dim]{escape(short_uri(node.uri))}[/]")
    if node.created_at is not None:
        parts.append(f"[dim]{node.created_at:%Y-%m-%d %H:%M:%S}[/]")
    return " ".join(parts)


def verdict_lines(d: Diff) -> list[str]:
    """The verdict as a few markup lines: the first difference, the chain, what the checks
    and the target's readers saw, the largest drop."""
    v = d.verdict
    lines = [f"[bold]{escape(v.text)}[/]"]
    if v.chain:
        lines.append("  [dim]flowed through:[/] " + escape(" → ".join(v.chain)))
    for seen in v.observed:
        lines.append("  [dim]seen:[/] " + escape(seen))
    if v.largest_drop:
        lines.append("  [dim]largest drop:[/] [red]" + escape(v.largest_drop) + "[/]")
    return lines


def _pair_line(direction: str, p: ArtifactPair) -> str:
    what = f"{direction} {p.role}: {p.type or 'artifact'}" if direction else (p.type or "artifact")
    da, db = describe_artifacts(p)
    if p.status == "added":
        return f"[green]+ {escape(what)}[/] {escape(db)}"
    if p.status == "removed":
        return f"[red]- {escape(what)}[/] {escape(da)}"
    if p.status == "equal":
        moved = [c for c in p.fields if c.key not in ("digest", "uri")]
        text = "same content" + (f", other file: {da} → {db}" if da != db else "")
        return f"{escape(what)} {escape(text)}" + (f"; {escape(changes_text(moved))}" if moved else "")
    return f"[yellow]~ {escape(what)}[/] {escape(da)} → {escape(db)}"


def _values(prefix: str, changes: Sequence[ValueChange], limit: int) -> list[str]:
    out = [f"{prefix} {escape(c.key)}: {escape(fmt(c.a))} → {escape(fmt(c.b))}"
           + (f" [dim]({c.relative:+.1%})[/]" if c.relative is not None and prefix == "" else "")
           for c in changes[:limit]]
    if len(changes) > limit:
        out.append(f"[dim]… {len(changes) - limit} more (--json)[/]")
    return out


def _step_branch(tree: Tree, s: StepPair, props: int) -> None:
    style = _STATUS_STYLE.get(s.status, "")
    label = f"[bold]{escape(s.type or s.name or '?')}[/] [{style}]{s.status}[/]{_KIND_NOTE[s.kind]}"
    if s.cache is not None:
        label += (" [cyan]· B reused A's output (cache)[/]" if s.cache.b_reused_a
                  else f" [cyan]· cache: A {s.cache.a_state}, B {s.cache.b_state}[/]")
    branch = tree.add(label)
    if s.status in ("same", "unchanged"):
        return
    for direction, pairs in (("in", s.inputs), ("out", s.outputs)):
        for p in pairs:
            if p.status == "same" or (p.status == "equal" and not [c for c in p.fields if c.key != "digest"]):
                continue
            sub = branch.add(_pair_line(direction, p))
            for line in _values("", p.properties, props):
                sub.add(line.lstrip())
    for prefix, changes in (("param", s.parameters), ("code", s.code), ("env", s.environment)):
        for line in _values(prefix, changes, props):
            branch.add(line)
    if s.state is not None:
        branch.add(f"state {escape(fmt(s.state.a))} → {escape(fmt(s.state.b))}")
    t = s.timing
    if t is not None and t.a_seconds is not None and t.b_seconds is not None \
            and _slower_or_faster(t.a_seconds, t.b_seconds):
        branch.add(f"[dim]time {t.a_seconds:.3g} s → {t.b_seconds:.3g} s[/]")


def _slower_or_faster(a: float, b: float) -> bool:
    """A change of wall time worth a line: over a second and over half."""
    return abs(b - a) > 1.0 and abs(b - a) > 0.5 * max(a, b)


def steps_tree(d: Diff, props: int = 5) -> Tree:
    """Every aligned step, most upstream first, with what differs."""
    c = d.counts
    summary = ", ".join(f"{n} {k}" for k, n in c.items())
    tree = Tree(f"[bold]Steps[/], most upstream first ({summary})")
    if d.target is not None and d.target.status not in ("same",):
        sub = tree.add("[bold]the targets:[/] " + _pair_line("", d.target))
        for line in _values("", d.target.properties, props):
            sub.add(line.lstrip())
    for s in d.steps:
        _step_branch(tree, s, props)
    return tree


def _delta_cell(delta: float | None, relative: float | None) -> str:
    if delta is None:
        return "—"
    style = "red" if relative is not None and relative < -0.05 or (relative is None and delta < 0) else \
        "green" if relative is not None and relative > 0.05 else ""
    text = f"{delta:+.3g}"
    return f"[{style}]{text}[/]" if style and delta != 0 else text


def metrics_table(metrics: Sequence[MetricDelta], title: str = "Metrics of the targets, largest drop first",
                  max_slices: int | None = None) -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in (("step", "left"), ("metric", "left"), ("slice", "left"), ("A", "right"), ("B", "right"),
                         ("Δ", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for m in metrics:
        if m.a is not None or m.b is not None or not m.slices:
            table.add_row(escape(m.step), escape(m.metric), "overall", fmt(m.a), fmt(m.b),
                          _delta_cell(m.delta, m.relative))
        shown = m.slices if max_slices is None else m.slices[:max_slices]
        for sl in shown:
            table.add_row("", "", escape(sl.slice), fmt(sl.a), fmt(sl.b), _delta_cell(sl.delta, sl.relative))
        if len(shown) < len(m.slices):
            table.add_row("", "", f"[dim]… {len(m.slices) - len(shown)} more[/]", "", "", "")
    return table


def print_diff(console: Console, d: Diff, props: int = 5, short: Mapping[str, str] | None = None) -> None:
    """The header and verdict (long lines kept whole, so they can be searched), then the
    steps and the metrics. ``short``: id -> its short form (``Store.short_ids``)."""
    lines = [node_line("A", d.a, short), node_line("B", d.b, short)]
    pipes = sorted(set(d.pipelines.get("a", [])) | set(d.pipelines.get("b", [])))
    if pipes:
        lines.append(f"[dim]pipeline {escape(', '.join(pipes))}[/]")
    lines += ["", *verdict_lines(d)]
    if d.truncated:
        lines.append("[yellow]a lineage walk hit its hop or node limit: raise --hops[/]")
    for line in lines:
        console.print(line, soft_wrap=True)
    if d.aligned:
        console.print()
        console.print(steps_tree(d, props))
        if d.metrics:
            console.print()
            console.print(metrics_table(d.metrics))


def impact_ids(found: Impact) -> list[str]:
    """The ids an impact prints (for ``Store.short_ids``)."""
    return [found.source.id, *(a.id for a in found.artifacts())]


def print_impact(console: Console, found: Impact, short: Mapping[str, str] | None = None) -> None:
    """The bad artifact, then what lies downstream by type (deployed and models first),
    then the steps fixed data would start again. ``short``: id -> its short form."""
    src = found.source
    c = found.counts
    ids = short or {}
    console.print(node_line("impact of", src, ids), soft_wrap=True)
    if found.pipelines:
        console.print(f"[dim]pipeline {escape(', '.join(found.pipelines))}[/]", soft_wrap=True)
    parts: list[RenderableType] = []
    tree = Tree(f"[bold]{c['artifacts']} artifacts downstream[/] (deployed: {c['deployed']}, models: {c['models']}, "
                f"LIVE: {c['live']}), read by {c['executions']} executions")
    for g in found.groups:
        branch = tree.add(f"[bold]{escape(g.type or '?')}[/] ({len(g.artifacts)})")
        for i in g.artifacts:
            a = i.artifact
            bits = [escape(a.name or ""), escape(f"[{a.state}]")]
            if i.deployed is not None:
                bits.append("[green]deployed[/]" if i.deployed else "[red]not deployed[/]")
            reason = a.properties.get("reason")
            if isinstance(reason, str) and reason:
                bits.append("— " + escape(fmt(reason)))
            bits.append(f"[dim]by {escape(i.made_by or '?')}, {i.hops} hops, {ids.get(a.id, a.id)}[/]")
            if a.uri:
                bits.append(f"[dim]{escape(short_uri(a.uri))}[/]")
            branch.add(" ".join(b for b in bits if b))
    parts.append(tree)
    if found.steps:
        parts.append("[bold]Fixed data would start again:[/]")
        for s in found.steps:
            slots = ", ".join(f"{k}: {v}" + (f" where {flt}" if (flt := s.filters.get(k)) else "")
                              for k, v in s.slots.items())
            where = f" [dim]({escape(s.pipeline)})[/]" if s.pipeline else ""
            parts.append(f"  {escape(s.name)}{where} [dim]on[/] {escape(slots)} [dim]policy {s.policy}[/]")
    if found.truncated:
        parts.append("[yellow]the walk hit its hop or node limit: raise --hops[/]")
    for part in parts:
        console.print(part)


def print_retire(console: Console, changes: Sequence[RetireChange], state: str, dry_run: bool, reason: str,
                 by: str, short: Mapping[str, str] | None = None) -> None:
    verb = "would mark" if dry_run else "marked"
    ids = short or {}
    console.print(Text(f"{verb} {len(changes)} artifacts {state} (reason: {reason}; by {by})", style="bold"),
                  soft_wrap=True)
    for c in changes:
        console.print(Text(f"  {c.type or '?'} {c.name or ''} {ids.get(c.id, c.id)}: {c.state_from} → {c.state_to}"),
                      soft_wrap=True)


__all__ = ["impact_ids", "metrics_table", "print_diff", "print_impact", "print_retire", "short_uri", "steps_tree",
           "verdict_lines"]
