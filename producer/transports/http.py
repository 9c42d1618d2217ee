"""The ``http`` transport: spooled batches posted to a team server (``metatrail serve``)
as gzip'd NDJSON to ``POST /api/v1/events``.

Retries are the relay's one tenacity policy, as for Kafka: a connection error, a timeout,
429 and 5xx are ``TransientTransportError`` and the batch is sent again (nothing is lost
while the server is down; nothing doubles when it comes back: the store knows event ids).
Invalid events are the server's to dead-letter (it answers 200 and lists them; they are
logged here). A batch the server refuses as a whole (400, 413, 422: too large, or bytes it
cannot read) is split in halves until the refused event is alone; the rest goes through,
and the refused events are reported as ``RejectedEventsError``, which the relay sets aside
in ``spool.deadletters.jsonl`` with the reason (as for Kafka's refusals). 401, 403 and 404
are configuration errors (token, URL): not retried in the cycle, the events wait.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from metatrail.producer.httpapi import ApiClient, HTTPStatusError
from metatrail.producer.transports.base import RejectedEventsError, SpooledEvent
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.producer")

#: Answers that refuse the batch's content, not the caller or the server's health.
_REFUSED = (400, 413, 422)


class HttpTransport:
    def __init__(self, settings: Settings, client: ApiClient | None = None) -> None:
        self.client = client or ApiClient.from_settings(settings)

    def send(self, batch: Sequence[SpooledEvent]) -> None:
        if not batch:
            return
        refused: list[tuple[SpooledEvent, str]] = []
        self._post(list(batch), refused)
        if refused:
            raise RejectedEventsError(refused)

    def _post(self, events: list[SpooledEvent], refused: list[tuple[SpooledEvent, str]]) -> None:
        try:
            answer = self.client.post_events([e.payload for e in events])
        except HTTPStatusError as exc:
            if exc.status not in _REFUSED:
                raise
            if len(events) == 1:
                refused.append((events[0], str(exc)))
                return
            middle = len(events) // 2
            self._post(events[:middle], refused)
            self._post(events[middle:], refused)
            return
        letters = answer.get("dead_letters") or []
        if letters:
            first = letters[0]
            log.warning("metatrail: the server dead-lettered %d of %d event(s) (first: %s); see metatrail dlq ls",
                        len(letters), len(events), first.get("reason") if isinstance(first, dict) else first)

    def close(self, timeout_s: float) -> bool:
        return True
