"""``POST /lineage`` and ``/lineage/batch``: the paths OpenLineage clients post to.

A client (``openlineage-python``, the Java client, Airflow's and Spark's integrations) is
pointed at ``metatrail serve`` with ``OPENLINEAGE_URL=http://host:8181`` (the client adds
``/api/v1/lineage``) and a write token as its ``api_key``; nothing else changes. Events go
through the one OpenLineage mapping and apply path (``apply_openlineage``), directly into
the store even on a server configured with a broker: apply is idempotent and
order-insensitive, so the server and ``metatrail consume`` may both write. An invalid event
is kept as a dead letter with its reason (nothing a client sends is lost) and reported:
400 for the single-event path, per position in a batch's answer.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from sqlalchemy import Engine

from metatrail.consumer.openlineage.ingest import LineageReport, apply_openlineage
from metatrail.consumer.openlineage.parsed import ParsedJson, load_json
from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.dependencies import State, require
from metatrail.consumer.server.errors import ApiError
from metatrail.consumer.server.events import decode_body, read_body, unpack_body
from metatrail.consumer.server.responses import JSONBody, json_body
from metatrail.schemas.settings import Settings

router = APIRouter(dependencies=[Depends(require("write"))])

_ONE = {
    "required": True,
    "description": "One OpenLineage event (RunEvent, spec 1-0-x to 2-0-2); `Content-Encoding: gzip` accepted.",
    "content": {"application/json": {"schema": {"type": "object"}}},
}
_MANY = {
    "required": True,
    "description": "OpenLineage events: a JSON array, `{\"events\": [...]}`, or newline-delimited JSON; "
                   "`Content-Encoding: gzip` accepted.",
    "content": {
        "application/json": {"schema": {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes; send smaller batches")
    return await read_body(request.stream(), limit)


@router.post("/lineage", response_model=hm.LineageResult, status_code=201, summary="Record one OpenLineage event",
             openapi_extra={"requestBody": _ONE})
async def post_lineage(request: Request, state: State) -> JSONBody:
    """Map and apply one OpenLineage event: 201 when it was applied (or was already there),
    400 naming what is wrong when it is not an OpenLineage run event (it is kept as a dead
    letter too); 503 while the store is unavailable (retry)."""
    limit = state.settings.server_max_request_bytes
    body = unpack_body(await _body(request, limit), request.headers.get("content-encoding"), limit)
    report = await state.appliers.run(_apply_one, body)
    if report.rejected:
        raise ApiError(400, "bad_event", f"not a valid OpenLineage event: {report.rejected[0].reason}")
    return json_body(report.to_json(), status_code=201)


@router.post("/lineage/batch", response_model=hm.LineageResult, summary="Record OpenLineage events",
             openapi_extra={"requestBody": _MANY})
async def post_lineage_batch(request: Request, state: State) -> JSONBody:
    """Map and apply several OpenLineage events in one transaction. Invalid events are
    dead-lettered with their reason and listed by position in `errors`; the others are
    applied. 400 only when the body holds no events at all."""
    limit = state.settings.server_max_request_bytes
    body = await _body(request, limit)
    # Parsed where it is applied, inside the collector pause of its apply: parsed
    # outside it, a batch's events (hundreds of thousands of objects) were alive when the
    # pause of another request's apply ended, and the collection that followed traversed
    # them all (~10% of the server's CPU with two clients).
    report = await state.appliers.run(_apply_body, body, request.headers.get("content-encoding"),
                                      request.headers.get("content-type"), limit)
    return json_body(report.to_json())


def _apply_one(engine: Engine, settings: Settings, body: bytes) -> LineageReport:
    return apply_openlineage(engine, [body], settings)


def _apply_body(engine: Engine, settings: Settings, body: bytes, encoding: str | None, media: str | None,
                limit: int) -> LineageReport:
    payloads = decode_body(body, encoding, media, limit, keep_values=True)
    if len(payloads) == 1 and payloads[0].lstrip().startswith(b"{"):
        payloads = _unwrap(payloads[0])
    return apply_openlineage(engine, payloads, settings)


def _unwrap(payload: bytes) -> list[bytes]:
    """``{"events": [...]}`` (what some batching clients send) as its events; anything else
    is one event."""
    try:
        data: Any = load_json(payload)
    except orjson.JSONDecodeError:
        return [payload]
    events = data.get("events") if isinstance(data, dict) else None
    if isinstance(events, list) and "eventType" not in data and "run" not in data:
        return [ParsedJson.of(event) for event in events]
    return [payload]
