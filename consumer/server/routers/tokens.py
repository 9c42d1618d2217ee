"""``/tokens``: list, create and revoke API tokens (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.dependencies import State, require
from metatrail.consumer.server.responses import JSONBody, json_body
from metatrail.consumer.server.tokens import TokenInfo, create_token, list_tokens, revoke_token

router = APIRouter(dependencies=[Depends(require("admin"))])


def token_json(info: TokenInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "scope": info.scope, "created_at": info.created_at.isoformat(),
            "revoked_at": info.revoked_at.isoformat() if info.revoked_at else None}


@router.get("/tokens", response_model=hm.TokenList, summary="List tokens")
def tokens(state: State, include_revoked: Annotated[bool, Query()] = False) -> JSONBody:
    """Tokens (never the tokens themselves: only their ids, names and scopes)."""
    return json_body({"items": [token_json(t) for t in list_tokens(state.engine, include_revoked=include_revoked)]})


@router.post("/tokens", response_model=hm.TokenCreated, status_code=201, summary="Create a token")
def new_token(state: State, request: hm.TokenCreate) -> JSONBody:
    """A new token: the answer is the only time it is shown."""
    token, info = create_token(state.engine, request.scope, request.name)
    return json_body({**token_json(info), "token": token}, status_code=201)


@router.delete("/tokens/{token_id}", response_model=hm.TokenOut, summary="Revoke a token")
def revoke(state: State, token_id: Annotated[str, Path(max_length=64)]) -> JSONBody:
    """Revoke a token by id or prefix; it is refused from the next request on. Idempotent."""
    return json_body(token_json(revoke_token(state.engine, token_id)))
