"""``POST /events``: deliver events over HTTP (the HTTP transport, CI jobs, scripts)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.dependencies import State, require
from metatrail.consumer.server.errors import ApiError
from metatrail.consumer.server.events import SubmitResult, decode_body, read_body
from metatrail.consumer.server.responses import JSONBody, json_body

router = APIRouter(dependencies=[Depends(require("write"))])

_BODY = {
    "required": True,
    "description": "A JSON array of events, one event, or newline-delimited events (NDJSON); "
                   "`Content-Encoding: gzip` accepted. The events' schema is the contract in schemas/json/.",
    "content": {
        "application/json": {"schema": {"oneOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}]}},
        "application/x-ndjson": {"schema": {"type": "string"}},
    },
}


def result_json(result: SubmitResult) -> dict[str, Any]:
    return {
        "received": result.received, "applied": result.applied, "duplicates": result.duplicates,
        "dead_lettered": result.dead_lettered, "published": result.published,
        "dead_letters": [{"index": i, "event_id": e, "kind": k, "reason": r} for i, e, k, r in result.rejected],
    }


@router.post("/events", response_model=hm.EventsResult, summary="Deliver events",
             openapi_extra={"requestBody": _BODY})
async def post_events(request: Request, state: State) -> JSONBody:
    """Validate and apply events (or publish them to Kafka on a server configured with a
    broker). Idempotent: events already applied count as duplicates. Invalid events are
    dead-lettered with their reason (listed in `dead_letters` by position) and the rest is
    applied. 413 past the size limit; 503 while the store is unavailable (retry)."""
    limit = state.settings.server_max_request_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"request body is larger than {limit} bytes; send smaller batches")
    body = await read_body(request.stream(), limit)
    payloads = decode_body(body, request.headers.get("content-encoding"), request.headers.get("content-type"), limit)
    result = await run_in_threadpool(state.sink.submit, payloads)
    return json_body(result_json(result))
