"""``metatrail ingest [--format openlineage] FILE.jsonl``: apply newline-delimited events
from a file: our events, or OpenLineage events as the OpenLineage client's file transport
writes them with ``append: true`` (one JSON event per line)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import typer

from metatrail.consumer.apply import ApplyReport, RawRecord, apply_records
from metatrail.consumer.cli.app import app
from metatrail.consumer.apply.records import FORMATS, record_options
from metatrail.consumer.cli.output import console, print_json
from metatrail.consumer.service.gcpolicy import tune_for_batches
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.migrate import upgrade
from metatrail.schemas.settings import load_settings


def read_records(path: Path, batch_size: int, fmt: str = "metatrail") -> Iterator[list[RawRecord]]:
    """Batches of non-blank lines (records of format ``fmt``), each keyed by file and line
    number, so re-ingesting the same file dead-letters a bad line once."""
    source = str(path.resolve())
    batch: list[RawRecord] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            batch.append(RawRecord(payload=line.rstrip(b"\r\n"), source_key=f"file:{source}:{number}", format=fmt))
            if len(batch) >= batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


@app.command("ingest")
def ingest(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="JSONL file of events."),
    url: str | None = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL)."),
    batch_size: int = typer.Option(500, min=1, max=100_000, help="Events per transaction."),
    fmt: str = typer.Option("metatrail", "--format", help="metatrail (our events) or openlineage (one "
                            "OpenLineage event per line, as the client's file transport writes)."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Apply events from a JSONL file (backfill, migration, debugging). Idempotent:
    ingesting a file twice leaves the store as ingesting it once. Bad lines are
    dead-lettered with their reason and counted; the rest is applied. The counts are of
    metatrail events: an OpenLineage event becomes several."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    settings = load_settings()
    engine = open_engine(url or settings.store_url)
    total = ApplyReport()
    tune_for_batches()
    try:
        upgrade(engine)
        for batch in read_records(file, batch_size, fmt):
            report = apply_records(engine, batch, **record_options(settings))
            total.merge(report)
    finally:
        engine.dispose()
    counts = {"applied": total.applied, "duplicates": total.duplicates, "dead_lettered": total.dead_lettered}
    if as_json:
        print_json({**counts, "dead_letters": [{"source": d.source_key, "reason": d.reason} for d in total.dead_letters]})
        return
    console.print(
        f"applied {total.applied}, duplicates {total.duplicates}, dead-lettered {total.dead_lettered}"
    )
    for letter in total.dead_letters[:20]:
        console.print(f"  dead letter {letter.source_key}: {letter.reason}", markup=False)
    if len(total.dead_letters) > 20:
        console.print(f"  ... and {len(total.dead_letters) - 20} more (metatrail dlq ls)")
