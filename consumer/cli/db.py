"""``metatrail db``: create or upgrade the store's schema."""

from __future__ import annotations

import typer

from consumer.cli.app import db_app
from consumer.cli.output import console, print_json
from consumer.store.engine import open_engine
from consumer.store.migrate import current_revision, head_revision, upgrade
from schemas.settings import load_settings


@db_app.command("upgrade")
def db_upgrade(
    url: str | None = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL)."),
    revision: str = typer.Option("head", help="Target revision."),
) -> None:
    """Create the store's tables, or migrate them to the newest schema. Idempotent."""
    store_url = url or load_settings().store_url
    engine = open_engine(store_url)
    try:
        upgrade(engine, revision)
        console.print(f"store at revision {current_revision(engine)} ({engine.url.render_as_string()})")
    finally:
        engine.dispose()


@db_app.command("current")
def db_current(
    url: str | None = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the store's schema revision and the newest one this code knows."""
    engine = open_engine(url or load_settings().store_url)
    try:
        data = {"current": current_revision(engine), "head": head_revision()}
    finally:
        engine.dispose()
    if as_json:
        print_json(data)
    else:
        console.print(f"current: {data['current']}  head: {data['head']}")
