"""``metatrail db``: create or upgrade the store's schema; prune its delivery bookkeeping;
close abandoned executions."""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import timedelta

import typer

from metatrail.consumer.cli.app import db_app
from metatrail.consumer.cli.output import console, print_json
from metatrail.consumer.store.engine import open_engine, open_existing
from metatrail.consumer.store.migrate import current_revision, head_revision, upgrade
from metatrail.consumer.service.reap import reap
from metatrail.consumer.store.prune import prune
from metatrail.schemas.settings import load_settings
from metatrail.schemas.urls import mask_url


@db_app.command("upgrade")
def db_upgrade(
    url: str | None = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL)."),
    revision: str = typer.Option("head", help="Target revision."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Create the store's tables, or migrate them to the newest schema. Idempotent."""
    store_url = url or load_settings().store_url
    engine = open_engine(store_url)
    try:
        before = current_revision(engine)
        upgrade(engine, revision)
        data = {"url": mask_url(store_url), "previous": before, "current": current_revision(engine),
                "head": head_revision()}
    finally:
        engine.dispose()
    if as_json:
        print_json(data)
    else:
        console.print(f"store at revision {data['current']} ({data['url']})")


@db_app.command("current")
def db_current(
    url: str | None = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the store's schema revision and the newest one this code knows."""
    engine = open_existing(url or load_settings().store_url)
    try:
        data = {"current": current_revision(engine), "head": head_revision()}
    finally:
        engine.dispose()
    if as_json:
        print_json(data)
    else:
        console.print(f"current: {data['current']}  head: {data['head']}")


_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s`` as a timedelta; raises
    ``typer.BadParameter`` on anything else (a usage error: exit code 2)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise typer.BadParameter(f"{text!r} is not a duration like 30d, 12h, 2w")
    return timedelta(seconds=int(match.group(1)) * _UNIT_S[match.group(2)])


@db_app.command("prune")
def db_prune(
    older_than: str = typer.Option("30d", "--older-than", help="Forget rows older than this (30d, 12h, 2w; at least 1d)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be deleted; delete nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    url: str | None = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL)."),
) -> None:
    """Delete delivery bookkeeping that is safe to forget: applied event ids, finished
    trigger claims and published trigger outbox rows older than --older-than. Lineage,
    properties, metrics and dead letters are never deleted. The cut-off must exceed the
    broker's retention and the spool's life. Batched; safe beside running services."""
    cutoff = parse_duration(older_than)
    engine = open_existing(url or load_settings().store_url)
    try:
        report = prune(engine, cutoff, dry_run=dry_run)
    except ValueError as exc:  # a cut-off under prune's minimum
        raise typer.BadParameter(f"--older-than {older_than}: {exc}") from None
    finally:
        engine.dispose()
    if as_json:
        print_json({"cutoff": report.cutoff, "dry_run": report.dry_run, "deleted": report.deleted})
        return
    verb = "would delete" if report.dry_run else "deleted"
    for table, rows in report.deleted.items():
        console.print(f"{table}: {verb} {rows} row(s)")
    console.print(f"cut-off {report.cutoff.isoformat()}")


@db_app.command("reap")
def db_reap(
    older_than: str | None = typer.Option(
        None, "--older-than",
        help="Also count as abandoned a RUNNING execution silent this long (45m, 12h, 2d; "
        "default METATRAIL_EXECUTION_STALE_AFTER_S).",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would be closed; change nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    url: str | None = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL)."),
) -> None:
    """Close abandoned executions as FAILED (reason "abandoned"), through events: RUNNING
    executions whose process is gone on this host, or with no event for --older-than.
    Idempotent; a producer that was alive after all still records its real end."""
    settings = load_settings()
    stale_after = parse_duration(older_than) if older_than else timedelta(seconds=settings.execution_stale_after_s)
    engine = open_existing(url or settings.store_url)
    try:
        report = reap(engine, settings, stale_after=stale_after, dry_run=dry_run)
    finally:
        engine.dispose()
    if as_json:
        print_json({
            "dry_run": report.dry_run,
            "stale_after_s": report.stale_after.total_seconds(),
            "applied": report.applied,
            "executions": [asdict(r) for r in report.executions],
        })
        return
    verb = "would close" if report.dry_run else "closed"
    for r in report.executions:
        console.print(f"{r.id} {r.type or '?'} {r.name or ''}: {r.reason}", markup=False)
    console.print(f"{verb} {len(report.executions)} abandoned execution(s) as FAILED")
