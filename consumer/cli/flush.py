"""``metatrail flush``: deliver what this host's producer spool still holds.

Events stay in the spool when a process was killed, or exited while the broker or the
store was unreachable. This command recovers the journals of processes that are gone,
adopts the events of those processes, and sends them through the configured transport
(``METATRAIL_TRANSPORT``) — exactly what their relays would have done. Events of producers
still running are left to their own relays. Delivery is at-least-once and the
store applies each event id once, so running it twice, or while a producer is alive,
changes nothing twice.
"""

from __future__ import annotations

from pathlib import Path

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import console, print_json
from metatrail.producer.relay import Relay
from metatrail.producer.spool import Spool
from metatrail.producer.transports import make_transport
from metatrail.schemas.settings import load_settings


@app.command("flush")
def flush(
    spool: Path | None = typer.Option(
        None, "--spool", help="Spool file (default: METATRAIL_SPOOL_PATH)."
    ),
    timeout_s: float = typer.Option(
        60.0, "--timeout", min=0.0, help="Give up after this many seconds."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> int:
    """Deliver the events left in the producer spool. Exit code 1 if some remain."""
    settings = load_settings()
    path = spool or settings.spool_path
    if not path.exists() and not path.with_name(path.name + ".journal").exists():
        result = {"spool": str(path.absolute()), "delivered": 0, "remaining": 0}
    else:
        store = Spool(
            path, max_bytes=settings.spool_max_bytes, full_policy=settings.spool_full_policy
        )
        relay = Relay(
            store, make_transport(settings), batch_size=settings.relay_batch_size, interval_s=0.0
        )
        try:
            relay.drain(timeout_s)
            remaining, live = store.pending(), store.held_by_others()
        finally:
            relay.transport.close(5.0)
            store.close()
        result = {
            "spool": str(store.path),
            "delivered": relay.delivered,
            "remaining": remaining,
            "held_by_running_processes": live,
        }
        if relay.last_error is not None and remaining:
            result["error"] = str(relay.last_error)
    if as_json:
        print_json(result)
    else:
        line = f"delivered {result['delivered']} events from {result['spool']} via {settings.transport}"
        if result["remaining"]:
            line += f"; {result['remaining']} remain ({result.get('error', 'timed out')})"
        if result.get("held_by_running_processes"):
            line += f"; {result['held_by_running_processes']} belong to running processes (their relays send them)"
        console.print(line)
    return 1 if result["remaining"] else 0
