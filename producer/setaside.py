"""What the spool cannot deliver is set aside next to it, never dropped silently.

Two files beside the spool (``.metatrail/spool.db`` → ``.metatrail/spool.<suffix>``), both
created 0600 (``metatrail.schemas.files``), appended to and fsynced before the spool
forgets what they hold (so a crash in between may repeat an entry, never lose one):

* ``spool.deadletters.jsonl``: events the transport refused for what they are (e.g. a
  Kafka broker refusing a message as too large: sending it again cannot succeed), one JSON
  object per line with the event id, partition key, reason, time, and the payload (as text,
  or base64 when it is not UTF-8). The queue moves on behind them.
* ``spool.corrupt``: journal bytes that no longer decode (a damaged frame), each region
  preceded by a line naming the journal file, offset and length, for inspection.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from metatrail.schemas.files import open_private
from metatrail.producer.journal import frames_in
from metatrail.producer.transports.base import SpooledEvent

log = logging.getLogger("metatrail.producer")


def dead_letter_path(spool_path: Path) -> Path:
    """The dead-letter file of the spool at ``spool_path``."""
    return Path(spool_path).with_suffix(".deadletters.jsonl")


def corrupt_path(spool_path: Path) -> Path:
    """The file receiving the undecodable journal bytes of the spool at ``spool_path``."""
    return Path(spool_path).with_suffix(".corrupt")


def _append(path: Path, data: bytes) -> None:
    """Append ``data`` durably (one write, fsync). Raises ``OSError``."""
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def save_rejected(spool_path: Path, rejected: Sequence[tuple[SpooledEvent, str]]) -> Path:
    """Append refused events with their reasons to the dead-letter file; returns its path.
    Raises ``OSError`` (the events then stay in the spool)."""
    now = datetime.now(timezone.utc).isoformat()
    lines = []
    for event, reason in rejected:
        entry: dict[str, object] = {
            "event_id": event.event_id,
            "key": event.key,
            "reason": reason,
            "set_aside_at": now,
            "payload_bytes": len(event.payload),
        }
        try:
            entry["payload"] = event.payload.decode("utf-8")
        except UnicodeDecodeError:
            entry["payload_base64"] = base64.b64encode(event.payload).decode("ascii")
        lines.append(json.dumps(entry, ensure_ascii=True) + "\n")
    path = dead_letter_path(spool_path)
    _append(path, "".join(lines).encode("ascii"))
    return path


def save_damage(spool_path: Path, journal: Path, regions: Sequence[tuple[int, bytes]]) -> int:
    """Append the damaged ``regions`` ((offset, bytes)) of ``journal`` to the corrupt file
    and warn, with counts; returns how many bytes. Raises ``OSError`` (the journal must then
    be kept)."""
    parts = []
    for offset, data in regions:
        parts.append(f"# {journal.name} offset {offset} length {len(data)}\n".encode())
        parts.append(data)
        parts.append(b"\n")
    path = corrupt_path(spool_path)
    _append(path, b"".join(parts))
    size = sum(len(data) for _, data in regions)
    log.warning(
        "metatrail: journal %s: %d damaged region(s), %d bytes (about %d event(s)), could not "
        "be decoded and were moved to %s; the events around them are kept",
        journal,
        len(regions),
        size,
        sum(frames_in(data) for _, data in regions),
        path,
    )
    return size
