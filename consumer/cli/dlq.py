"""``metatrail dlq ls`` and ``metatrail dlq replay``: inspect and re-apply dead letters."""

from __future__ import annotations

import typer
from rich.table import Table

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import console, print_json
from metatrail.consumer.service.replay import list_dead_letters, replay_dead_letters
from metatrail.consumer.store.engine import open_existing
from metatrail.schemas.settings import load_settings

dlq_app = typer.Typer(help="Inspect and replay dead letters (input that could not be applied).",
                      no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("ls")
def dlq_ls(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    limit: int = typer.Option(50, "--limit", min=1, help="Newest N dead letters."),
    pending: bool = typer.Option(False, "--pending", help="Only those not replayed into the store."),
) -> None:
    """List dead letters, newest first, with the reason and where each came from."""
    engine = open_existing(load_settings().store_url)
    try:
        letters = list_dead_letters(engine, limit=limit, pending_only=pending)
    finally:
        engine.dispose()
    if as_json:
        print_json(letters)
        return
    if not letters:
        console.print("no dead letters")
        return
    table = Table("id", "source", "kind", "bytes", "created", "replayed", "reason")
    for dl in letters:
        table.add_row(
            str(dl.id), dl.source_key, dl.kind or "", str(dl.payload_bytes),
            dl.created_at.strftime("%Y-%m-%d %H:%M:%S"), dl.replay_result or "",
            dl.reason if len(dl.reason) < 120 else dl.reason[:117] + "...",
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    ids: list[int] = typer.Option([], "--id", help="Dead letter id to replay (repeatable)."),
    replay_all: bool = typer.Option(False, "--all", help="Replay every dead letter not yet in the store."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> int:
    """Re-parse and apply dead letters (after a fix). Idempotent: an event already in the
    store is a duplicate and changes nothing. Exit 1 if any is still not applicable."""
    if bool(ids) == replay_all:
        raise typer.BadParameter("give either --id N (repeatable) or --all")
    settings = load_settings()
    engine = open_existing(settings.store_url)
    try:
        outcomes = replay_dead_letters(engine, settings, ids or None)
    finally:
        engine.dispose()
    if as_json:
        print_json([{"id": o.id, "source_key": o.source_key, "result": o.result} for o in outcomes])
    else:
        for o in outcomes:
            console.print(f"{o.id} {o.source_key}: {o.result}")
        done = sum(o.done for o in outcomes)
        console.print(f"{done} of {len(outcomes)} dead letter(s) now in the store")
    return 0 if all(o.done for o in outcomes) else 1
