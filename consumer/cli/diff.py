"""``metatrail diff A B`` and ``metatrail impact ID``: why two models differ, and what a
bad dataset touched (optionally retiring it all through events)."""

from __future__ import annotations

import getpass
import socket

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.diffview import impact_ids, print_diff, print_impact, print_retire
from metatrail.consumer.cli.output import console, print_json
from metatrail.consumer.cli.query import JSON_OPTION, URL_OPTION, open_store
from metatrail.consumer.query.impact import retire_events, retire_plan
from metatrail.consumer.query.lineage import DEFAULT_MAX_HOPS
from metatrail.schemas.errors import FilterError

_RETIRE_STATES = ("ABANDONED", "DELETED", "MARKED_FOR_DELETION")


@app.command("diff")
def diff(
    a: str = typer.Argument(..., help="A: a model (any artifact), execution or run id, or an id prefix."),
    b: str = typer.Argument(..., help="B: one of the same kind."),
    hops: int = typer.Option(DEFAULT_MAX_HOPS, "--hops", help="Hop limit of each lineage walk (edges)."),
    props: int = typer.Option(5, "--props", min=1, help="Changed values shown per artifact or setting."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Why B differs from A: both lineages aligned step by step, what changed in each
    step, the metrics side by side per slice, and the first difference."""
    store = open_store(url)
    try:
        result = store.diff(a, b, max_hops=hops)
        short = {} if as_json else store.short_ids([result.a.id, result.b.id])
    finally:
        store.close()
    if as_json:
        print_json(result.to_json())
        return
    print_diff(console, result, props, short)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (a container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@app.command("impact")
def impact(
    artifact_id: str = typer.Argument(..., help="The artifact found bad (id or prefix)."),
    retire: bool = typer.Option(False, "--retire", help="Mark it and everything downstream retired (events)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what --retire would change; change nothing."),
    state: str = typer.Option("ABANDONED", "--state", help="With --retire: ABANDONED, DELETED or MARKED_FOR_DELETION."),
    reason: str | None = typer.Option(None, "--reason", help="With --retire: why (kept with each artifact)."),
    by: str | None = typer.Option(None, "--by", help="With --retire: who asked (default user@host)."),
    hops: int = typer.Option(DEFAULT_MAX_HOPS, "--hops", help="Hop limit of the walk downstream (edges)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Everything downstream of an artifact, deployed artifacts and models first, and the
    steps fixed data would start again; --retire marks them all (--dry-run: show only)."""
    if state not in _RETIRE_STATES:
        raise FilterError(f"impact: --state must be one of {', '.join(_RETIRE_STATES)}, got {state!r}")
    store = open_store(url)
    try:
        found = store.impact(artifact_id, max_hops=hops)
        short = {} if as_json else store.short_ids(impact_ids(found))
        if not (retire or dry_run):
            print_json(found.to_json()) if as_json else print_impact(console, found, short)
            return
        changes = retire_plan(found, state)
        why = reason or f"made from {found.source.type or 'artifact'} {found.source.id}, found bad"
        who = by or _who()
        applied = 0
        if not dry_run and changes:
            from metatrail.consumer.apply import apply_events
            from metatrail.consumer.store.engine import writing

            with writing(store.engine) as writer:
                applied = apply_events(writer, retire_events(found, changes, reason=why, requested_by=who)).applied
    finally:
        store.close()
    if as_json:
        print_json({"impact": found.to_json(), "retire": {
            "dry_run": dry_run, "state": state, "reason": why, "requested_by": who,
            "changes": [c.to_json() for c in changes], "applied": applied}})
        return
    print_impact(console, found, short)
    print_retire(console, changes, state, dry_run, why, who, short)
