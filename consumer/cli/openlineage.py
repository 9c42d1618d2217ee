"""``metatrail export --format openlineage FILE`` and ``metatrail forward openlineage URL``:
metatrail executions as OpenLineage RunEvents, to a file or to an endpoint (Marquez...)."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from pathlib import Path

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.db import parse_duration
from metatrail.consumer.cli.output import console, err_console, print_json
from metatrail.consumer.openlineage.export import export_file
from metatrail.consumer.openlineage.forward import OpenLineageForwarder, forward_group
from metatrail.consumer.openlineage.target import HttpTarget
from metatrail.consumer.query.store import Store
from metatrail.consumer.service.signals import stop_on_signals
from metatrail.schemas.errors import ConfigError
from metatrail.schemas.settings import load_settings

forward_app = typer.Typer(help="Send executions to another system as they are recorded.", no_args_is_help=True)
app.add_typer(forward_app, name="forward")


def parse_since(text: str) -> datetime:
    """An ISO 8601 time (naive: UTC) or a duration back from now (``7d``, ``12h``)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return datetime.now(timezone.utc) - parse_duration(text)
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when


@app.command("export")
def export(
    file: Path = typer.Argument(..., dir_okay=False, help="File to write (JSONL, replaced if it exists)."),
    fmt: str = typer.Option(..., "--format", help="openlineage: one RunEvent (spec 2-0-2) per line."),
    since: str | None = typer.Option(None, "--since", help="Only executions updated since: ISO time or 7d, 12h."),
    url: str | None = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL)."),
    as_json: bool = typer.Option(False, "--json", help="Print the count as JSON."),
) -> None:
    """Write the store's executions as OpenLineage RunEvents: START, then COMPLETE, FAIL or
    ABORT once ended (executions imported from OpenLineage are left out)."""
    if fmt != "openlineage":
        raise typer.BadParameter(f"--format must be openlineage, got {fmt!r}")
    when = parse_since(since) if since else None
    with Store.open(url or load_settings().store_url) as store:
        count = export_file(store, file, since=when)
    if as_json:
        print_json({"events": count, "file": str(file)})
    else:
        console.print(f"wrote {count} OpenLineage events to {file}")


@forward_app.command("openlineage")
def forward_openlineage(
    target_url: str = typer.Argument(..., metavar="URL", help="Base URL of the OpenLineage endpoint (e.g. Marquez)."),
    endpoint: str = typer.Option("api/v1/lineage", "--endpoint", help="Path appended to URL."),
    timeout_s: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds per request."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every batch."),
    as_json: bool = typer.Option(False, "--json", help="Print the totals as JSON when stopped."),
) -> None:
    """Post executions to URL as RunEvents while they are recorded: reads the events topic
    as its own consumer group and commits only what the target accepted. The bearer token
    is METATRAIL_OPENLINEAGE_FORWARD_API_KEY. Stops cleanly on SIGTERM / SIGINT."""
    settings = load_settings()
    if not settings.kafka_bootstrap:
        raise ConfigError("METATRAIL_KAFKA_BOOTSTRAP is not set: `metatrail forward` reads the events topic")
    logging.getLogger("metatrail").setLevel(logging.DEBUG if verbose else logging.INFO)
    key = settings.openlineage_forward_api_key
    target = HttpTarget(target_url, endpoint=endpoint, api_key=key.get_secret_value() if key else None,
                        timeout_s=timeout_s)
    with Store.open(settings.store_url) as store:
        forwarder = OpenLineageForwarder(settings, target, store)
        err_console.print(f"forwarding {settings.events_topic} as group {forward_group(settings)} to {target.url}")
        with stop_on_signals(forwarder.stop):
            stats = forwarder.run()
    if as_json:
        print_json(stats)
    else:
        err_console.print(f"stopped: {stats.sent} sent, {stats.refused} refused, {stats.commits} commits")
