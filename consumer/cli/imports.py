"""``metatrail import mlmd LOCATION``: bring an ML Metadata store's history into metatrail."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine

from metatrail.consumer.cli.app import import_app
from metatrail.consumer.cli.output import console, err_console, print_json
from metatrail.consumer.mlmd import ImportReport, import_mlmd
from metatrail.consumer.service.gcpolicy import tune_for_batches
from metatrail.consumer.store.engine import open_engine, open_existing
from metatrail.consumer.store.migrate import upgrade
from metatrail.schemas.errors import StoreNotFoundError
from metatrail.schemas.settings import load_settings

#: What the end of an import lists, in this order (MLMD's tables).
_SHOWN = ("Type", "Context", "ParentContext", "Artifact", "Execution", "Event", "Attribution", "Association",
          "ArtifactProperty", "ExecutionProperty", "ContextProperty", "EventPath")


@import_app.command("mlmd")
def mlmd(
    location: str = typer.Argument(..., help="The MLMD store: a SQLite file (or sqlite:///path), "
                                   "mysql+pymysql://user:password@host/db, or postgresql+psycopg://..."),
    url: str | None = typer.Option(None, "--url", help="metatrail store URL (default: METATRAIL_STORE_URL)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and convert everything; count what would be "
                                 "applied; write nothing."),
    page_size: int = typer.Option(1000, "--page-size", min=10, max=100_000, help="Nodes per page (and transaction)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Import an ML Metadata (MLMD) store: types, artifacts, executions, contexts, events,
    attributions and associations, with their properties, as metatrail events. Idempotent:
    importing the same store again changes nothing; a store that grew imports what is new.
    Schema versions 6 to 10 (TFX, Kubeflow Pipelines)."""
    settings = load_settings()
    engine = _target(url or settings.store_url, dry_run)
    tune_for_batches()
    try:
        if engine is not None and not dry_run:
            upgrade(engine)
        show = not as_json and err_console.is_terminal
        with Progress(TextColumn("{task.description:<13}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=err_console, disable=not show, transient=True) as bar:
            task = bar.add_task("opening", total=None)

            def progress(phase: str, done: int, total: int) -> None:
                bar.update(task, description=phase, completed=done, total=total)

            report = import_mlmd(location, engine, dry_run=dry_run, page_size=page_size, progress=progress,
                                 settings=settings)
    finally:
        if engine is not None:
            engine.dispose()
    if as_json:
        print_json(report.to_json())
        return
    _print_report(report)


def _target(url: str, dry_run: bool) -> Engine | None:
    """The store to import into: made (and migrated) if need be; for a dry run, which
    writes nothing, the existing store or None (then everything counts as new)."""
    if not dry_run:
        return open_engine(url)
    try:
        return open_existing(url)
    except StoreNotFoundError:
        return None


def _print_report(report: ImportReport) -> None:
    table = Table(title=f"MLMD schema {report.schema_version} store {report.source}", show_header=True)
    table.add_column("MLMD table")
    table.add_column("rows read", justify="right")
    for name in _SHOWN:
        table.add_row(name, f"{report.source_rows.get(name, 0):,}")
    console.print(table)
    rate = report.rows / report.seconds if report.seconds else 0.0
    if report.dry_run:
        console.print(f"dry run: {report.events:,} events, {report.would_apply:,} would be applied, "
                      f"{report.duplicates:,} already imported, {report.dead_lettered:,} cannot be imported")
    else:
        console.print(f"{report.events:,} events: {report.applied:,} applied, {report.duplicates:,} already imported, "
                      f"{report.dead_lettered:,} dead-lettered ({report.rows:,} rows in {report.seconds:.1f} s, "
                      f"{rate:,.0f} rows/s)")
    for letter in report.dead_letters[:10]:
        console.print(f"  {letter.reason}", markup=False)
    if report.pipelines or report.runs:
        names = ", ".join(report.pipelines[:5]) + (" ..." if len(report.pipelines) > 5 else "")
        console.print(f"pipelines: {names or '-'}; runs: {report.runs:,}")
        console.print("next: metatrail ls contexts --filter \"type IN ('pipeline_run', 'run', 'system.PipelineRun')\""
                      ", then metatrail compare RUN RUN and metatrail lineage ID", markup=False)
