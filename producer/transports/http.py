"""The ``http`` transport: spooled batches posted to a team server (``metatrail serve``)
as gzip'd NDJSON to ``POST /api/v1/events``.

Retries are the relay's one tenacity policy, as for Kafka: a connection error, a timeout,
429 and 5xx are ``TransientTransportError`` and the batch is sent again (nothing is lost
while the server is down; nothing doubles when it comes back: the store knows event ids).
Invalid events are the server's to dead-letter (it answers 200 and lists them; they are
logged here). A batch the server refuses as a whole (400, 413, 422: too large, or bytes it
cannot read) is split in halves until the refused event is alone; that event is appended
to ``<spool>.rejected.jsonl`` (0600) with the reason and the rest goes through. 401, 403
and 404 are configuration errors (token, URL): not retried in the cycle, the events wait.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from metatrail.producer.httpapi import ApiClient, HTTPStatusError
from metatrail.producer.transports.base import SpooledEvent
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.producer")

#: Answers that refuse the batch's content, not the caller or the server's health.
_REFUSED = (400, 413, 422)


class HttpTransport:
    def __init__(self, settings: Settings, client: ApiClient | None = None) -> None:
        self.client = client or ApiClient.from_settings(settings)
        self.rejected_path = Path(str(settings.spool_path) + ".rejected.jsonl")

    def send(self, batch: Sequence[SpooledEvent]) -> None:
        if batch:
            self._post(list(batch))

    def _post(self, events: list[SpooledEvent]) -> None:
        try:
            answer = self.client.post_events([e.payload for e in events])
        except HTTPStatusError as exc:
            if exc.status not in _REFUSED:
                raise
            if len(events) == 1:
                self._reject(events[0], str(exc))
                return
            middle = len(events) // 2
            self._post(events[:middle])
            self._post(events[middle:])
            return
        letters = answer.get("dead_letters") or []
        if letters:
            first = letters[0]
            log.warning("metatrail: the server dead-lettered %d of %d event(s) (first: %s); see metatrail dlq ls",
                        len(letters), len(events), first.get("reason") if isinstance(first, dict) else first)

    def _reject(self, event: SpooledEvent, reason: str) -> None:
        """Keep an event the server refuses on its own, with why, and let the rest through."""
        line = json.dumps({"event_id": event.event_id, "reason": reason,
                           "payload": event.payload.decode("utf-8", "replace")}) + "\n"
        self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.rejected_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        log.error("metatrail: the server refused event %s (%s); kept in %s", event.event_id, reason, self.rejected_path)

    def close(self, timeout_s: float) -> bool:
        return True
