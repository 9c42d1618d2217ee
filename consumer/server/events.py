"""``POST /api/v1/events``: request bodies into events, events into the one apply path.

A body is a JSON array of events, a single event, or newline-delimited events (NDJSON,
what the HTTP transport sends), optionally gzip-compressed (``Content-Encoding: gzip``).
Each event becomes a ``RawRecord`` keyed ``http:sha256:<digest of its bytes>`` and goes
through ``apply_records`` exactly as ``metatrail ingest`` sends a file's lines: valid
events are applied in one transaction, invalid ones become dead letters with their reason
(the same bytes posted again are the same dead letter), and the store's event ids make a
re-post a no-op. A server configured with a broker (``METATRAIL_TRANSPORT=kafka``)
publishes the valid events to the events topic instead, keyed as producers key them, and
dead-letters the invalid ones in the store.
"""

from __future__ import annotations

import hashlib
import json
import threading
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Engine

from metatrail.consumer.apply import ApplyReport, RawRecord, apply_records
from metatrail.consumer.apply.records import record_options
from metatrail.consumer.openlineage.parsed import ParsedJson
from metatrail.consumer.server.errors import ApiError
from metatrail.schemas.errors import EventValidationError
from metatrail.schemas.parse import parse_event
from metatrail.schemas.settings import Settings

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/ndjson",
                "text/plain")


@dataclass
class SubmitResult:
    """What one ``POST /events`` did; ``rejected`` is (index, event id, kind, reason)."""

    received: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    published: int = 0
    rejected: list[tuple[int, str | None, str | None, str]] = field(default_factory=list)


def source_key(payload: bytes) -> str:
    return "http:sha256:" + hashlib.sha256(payload).hexdigest()


async def read_body(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The request body, refused with 413 past ``max_bytes`` (before it is all read)."""
    body = bytearray()
    async for chunk in chunks:
        body.extend(chunk)
        if len(body) > max_bytes:
            raise ApiError(413, "payload_too_large", f"request body is larger than {max_bytes} bytes; send smaller batches")
    return bytes(body)


def decode_body(body: bytes, content_encoding: str | None, content_type: str | None, max_bytes: int, *,
                keep_values: bool = False) -> list[bytes]:
    """The events' bytes in a body (see the module docstring). ``keep_values``: the items
    of a JSON array that orjson parsed come as ``ParsedJson``, for a reader that would
    parse them again (the OpenLineage mapping). Raises ``ApiError``: 400 for a body that
    is not JSON events at all, 413 past ``max_bytes`` unpacked, 415 for an unknown
    encoding."""
    body = unpack_body(body, content_encoding, max_bytes)
    media = (content_type or "").split(";")[0].strip().lower()
    start = body.lstrip()[:1]
    if media in NDJSON_TYPES or (media != "application/json" and start not in (b"[", b"")):
        return [line.rstrip(b"\r") for line in body.split(b"\n") if line.strip()]
    if not start:
        return []
    return _json_items(body, keep_values)


def _json_items(body: bytes, keep_values: bool = False) -> list[bytes]:
    """Each item of a JSON array body (or the one JSON value) as its own JSON bytes.

    Split by orjson: the standard library's parse and re-dump of a 500-event batch cost
    the server more CPU than applying it (or mapping it, for OpenLineage). What orjson
    refuses and the standard library reads (NaN, an integer beyond 64 bits) takes the
    standard library's way, which keeps each item apart: such an event is dead-lettered
    alone (the contract refuses it), not the body."""
    dump: Callable[[Any], bytes] = ParsedJson.of if keep_values else orjson.dumps
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_request", f"body is not a JSON array of events nor NDJSON: {exc}") from exc
        dump = _standard_dump
    items = data if isinstance(data, list) else [data]
    return [dump(item) for item in items]


def _standard_dump(item: Any) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def unpack_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """The body as sent before its ``Content-Encoding`` (gzip or none). Raises
    ``ApiError``: 400 for broken gzip, 413 past ``max_bytes`` unpacked, 415 for another
    encoding."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        return _gunzip(body, max_bytes)
    if encoding not in ("identity", ""):
        raise ApiError(415, "unsupported_media_type", f"Content-Encoding {encoding!r} is not supported (use gzip)")
    return body


def _gunzip(body: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ApiError(400, "bad_request", f"body is not valid gzip: {exc}") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise ApiError(413, "payload_too_large", f"request body is larger than {max_bytes} bytes unpacked")
    return out


class EventSink:
    """Applies (or publishes) posted events. Thread-safe; blocking (run it off the loop)."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = engine
        self.publishes = settings.transport == "kafka"
        self._kafka: object | None = None
        self._lock = threading.Lock()

    def submit(self, payloads: list[bytes]) -> SubmitResult:
        """Apply or publish ``payloads``. Idempotent. Raises ``TransientStoreError`` /
        ``TransientTransportError`` when the store or broker is unwell (nothing applied)."""
        records = [RawRecord(payload=p, source_key=source_key(p)) for p in payloads]
        result = SubmitResult(received=len(records))
        if not records:
            return result
        if self.publishes:
            invalid = self._publish(records, result)
            report = self._apply(invalid) if invalid else ApplyReport()
        else:
            report = self._apply(records)
        result.applied, result.duplicates, result.dead_lettered = report.applied, report.duplicates, report.dead_lettered
        positions: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            positions.setdefault(record.source_key, []).append(i)
        for letter in report.dead_letters:
            for i in positions.get(letter.source_key, []):
                result.rejected.append((i, letter.event_id, letter.kind, letter.reason))
        result.rejected.sort()
        return result

    def _apply(self, records: list[RawRecord]) -> ApplyReport:
        return apply_records(self.engine, records, **record_options(self.settings))

    def _publish(self, records: list[RawRecord], result: SubmitResult) -> list[RawRecord]:
        """Publish the valid records; returns the invalid ones (to dead-letter)."""
        from metatrail.producer.build import partition_key
        from metatrail.producer.transports.base import SpooledEvent
        from metatrail.producer.transports.kafka import KafkaTransport

        batch, invalid = [], []
        for seq, record in enumerate(records):
            try:
                event = parse_event(record.payload, max_bytes=self.settings.kafka_max_message_bytes)
            except EventValidationError:
                invalid.append(record)
                continue
            batch.append(SpooledEvent(seq, str(event.event_id), partition_key(event), record.payload))
        if batch:
            with self._lock:  # one KafkaTransport, used by one thread at a time
                if self._kafka is None:
                    self._kafka = KafkaTransport(self.settings)
                self._kafka.send(batch)  # type: ignore[attr-defined]
        result.published = len(batch)
        return invalid

    def close(self) -> None:
        with self._lock:
            if self._kafka is not None:
                self._kafka.close(5.0)  # type: ignore[attr-defined]
                self._kafka = None
