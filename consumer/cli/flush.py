"""``metatrail flush``: deliver what this host's producer spool still holds.

Events stay in the spool when a process was killed, or exited while the broker or the
store was unreachable. This command recovers the journals of processes that are gone,
adopts the events of those processes, and sends them through the configured transport
(``METATRAIL_TRANSPORT``) — exactly what their relays would have done. Events of producers
still running are left to their own relays. Delivery is at-least-once and the
store applies each event id once, so running it twice, or while a producer is alive,
changes nothing twice.

It tells the truth: how many events were delivered, how many the transport refused (set
aside in the spool's dead-letter file), how much of a journal was damaged (moved to
``spool.corrupt``), how many remain; the exit code is 1 when anything was left behind. A
spool it cannot open or write (read-only, disk full) is one line of error, exit 1.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import console, print_json
from metatrail.producer import journal, setaside
from metatrail.producer.relay import Relay
from metatrail.producer.spool import Spool
from metatrail.producer.transports import make_transport
from metatrail.schemas.errors import TransportError
from metatrail.schemas.settings import Settings, load_settings


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
    """Deliver the events left in the producer spool. Exit code 1 if any were left behind
    (remaining, refused and set aside, or damaged)."""
    settings = load_settings()
    path = spool or settings.spool_path
    if not path.exists() and not path.with_name(path.name + ".journal").exists():
        result: dict[str, Any] = {"spool": str(path.absolute()), "delivered": 0, "remaining": 0}
    else:
        try:
            result = _drain(path, settings, timeout_s)
        except (sqlite3.Error, OSError) as exc:
            raise TransportError(f"cannot flush the spool {path.absolute()}: {exc}") from exc
    if as_json:
        print_json(result)
    else:
        console.print(_sentence(result, settings.transport), soft_wrap=True)
    left = ("remaining", "set_aside", "damaged_regions", "unread_journals")
    return 1 if any(result.get(key) for key in left) else 0


def _drain(path: Path, settings: Settings, timeout_s: float) -> dict[str, Any]:
    store = Spool(path, max_bytes=settings.spool_max_bytes, full_policy=settings.spool_full_policy)
    try:
        store.conn()  # an unusable spool (read-only, missing folder) fails here, in one line
        relay = Relay(
            store, make_transport(settings), batch_size=settings.relay_batch_size, interval_s=0.0
        )
        try:
            relay.drain(timeout_s)
            remaining, live = store.pending(), store.held_by_others()
        finally:
            relay.transport.close(5.0)
    finally:
        store.close()
    result: dict[str, Any] = {
        "spool": str(store.path),
        "delivered": relay.delivered,
        "remaining": remaining,
        "held_by_running_processes": live,
        "set_aside": relay.set_aside,
        "damaged_regions": store.damaged,
        "damaged_bytes": store.damaged_bytes,
    }
    if relay.set_aside:
        result["dead_letter_file"] = str(relay.dead_letter_path)
        result["set_aside_reason"] = relay.set_aside_reason
    if store.damaged:
        result["corrupt_file"] = str(setaside.corrupt_path(store.path))
    kept = _unrecovered_journals(store)
    if kept:  # a journal it could not read is kept, and counts as left behind
        result["unread_journals"] = kept
    if relay.last_error is not None and (remaining or kept):
        result["error"] = str(relay.last_error)
    return result


def _unrecovered_journals(store: Spool) -> list[str]:
    """Journals of processes that are gone still on disk (they could not be read)."""
    kept = []
    for journal_path, fd in journal.orphans(store.journal_dir, None):
        os.close(fd)
        kept.append(str(journal_path))
    return kept


def _sentence(result: dict[str, Any], transport: str) -> str:
    line = f"delivered {result['delivered']} events from {result['spool']} via {transport}"
    if result.get("set_aside"):
        line += (
            f"; {result['set_aside']} refused and set aside in {result['dead_letter_file']} "
            f"({result['set_aside_reason']})"
        )
    if result.get("damaged_regions"):
        line += (
            f"; {result['damaged_regions']} damaged journal region(s), "
            f"{result['damaged_bytes']} bytes, moved to {result['corrupt_file']}"
        )
    if result.get("unread_journals"):
        line += f"; journal(s) kept, not fully read: {', '.join(result['unread_journals'])}"
    if result["remaining"] or result.get("unread_journals"):
        line += f"; {result['remaining']} remain ({result.get('error', 'timed out')})"
    if result.get("held_by_running_processes"):
        line += (
            f"; {result['held_by_running_processes']} belong to running processes "
            "(their relays send them)"
        )
    return line
