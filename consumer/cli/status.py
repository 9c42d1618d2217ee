"""``metatrail status``: is the service keeping up? Lag, last event, dead letters, spool."""

from __future__ import annotations

import logging

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import console, print_json
from metatrail.consumer.service.status import ServiceStatus, collect_status
from metatrail.schemas.settings import load_settings


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Per-partition lag of the consumer group, the last applied event and when, the
    dead-letter count, and this host's spool backlog. Parts that cannot be reached say why."""
    settings = load_settings()
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # an unreachable broker is reported below
    report = collect_status(settings)
    if as_json:
        print_json(report)
    else:
        _print(report)


def _print(report: ServiceStatus) -> None:
    g, s, sp = report.group, report.store, report.spool
    console.print(f"consumer group {g.group} on {g.topic} ({g.bootstrap or 'no broker'})")
    if g.error:
        console.print(f"  unavailable: {g.error}")
    for p in g.partitions:
        committed = "-" if p.committed is None else str(p.committed)
        console.print(f"  partition {p.partition}: committed {committed}  end {p.end}  lag {p.lag}")
    if g.total_lag is not None:
        console.print(f"  total lag {g.total_lag}")
    if s.error:
        console.print(f"store unavailable: {s.error}")
    else:
        when = s.last_applied_at.isoformat() if s.last_applied_at else "never"
        console.print(f"last applied event: {s.last_event_kind or '-'} {s.last_event_id or ''} at {when}")
        console.print(f"dead letters: {s.dead_letters} ({s.dead_letters_pending} not replayed)")
    if not sp.exists:
        console.print(f"spool: none at {sp.path}")
    elif sp.error:
        console.print(f"spool: {sp.error}")
    else:
        console.print(f"spool: {sp.events} event(s) waiting, {sp.journal_bytes_pending} journal byte(s) "
                      f"not yet spooled ({sp.path})")
