"""``/dead-letters``: what could not be applied and why; replay after a fix (admin)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.dependencies import State, require
from metatrail.consumer.server.paging import MAX_PAGE_SIZE, decode_page_token, encode_page_token
from metatrail.consumer.server.responses import JSONBody, json_body
from metatrail.consumer.service.replay import list_dead_letters, replay_dead_letters
from metatrail.schemas.errors import FilterError

router = APIRouter()
_SCOPE = "dead-letters"


@router.get("/dead-letters", response_model=hm.DeadLetterPage, summary="List dead letters",
            dependencies=[Depends(require("read"))])
def dead_letters(
    state: State,
    page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
    page_token: Annotated[str | None, Query(max_length=200)] = None,
    pending: Annotated[bool, Query(description="Only those not replayed into the store.")] = False,
) -> JSONBody:
    """Dead letters, newest first, with their reason and where each came from (no payloads)."""
    before = None
    if page_token:
        cursor = decode_page_token(page_token, _SCOPE + str(pending))
        if not cursor.isdigit() or int(cursor) > 2**63:
            raise FilterError("page_token is not a token this server handed out")
        before = int(cursor)
    letters = list_dead_letters(state.engine, limit=page_size + 1, pending_only=pending, before_id=before)
    more = len(letters) > page_size
    letters = letters[:page_size]
    token = encode_page_token(str(letters[-1].id), _SCOPE + str(pending)) if more and letters else None
    items = []
    for letter in letters:
        data = asdict(letter)
        for key in ("created_at", "replayed_at"):
            data[key] = data[key].isoformat() if data[key] else None
        items.append(data)
    return json_body({"items": items, "next_page_token": token})


@router.post("/dead-letters/replay", response_model=hm.ReplayOut, summary="Replay dead letters",
             dependencies=[Depends(require("admin"))])
async def replay(state: State, request: hm.ReplayRequest) -> JSONBody:
    """Re-parse and apply dead letters (`ids`, or every one not yet in the store).
    Idempotent. Needs an admin token."""
    outcomes = await run_in_threadpool(replay_dead_letters, state.engine, state.settings, request.ids)
    return json_body({"outcomes": [{"id": o.id, "source_key": o.source_key, "result": o.result, "done": o.done}
                                   for o in outcomes]})
