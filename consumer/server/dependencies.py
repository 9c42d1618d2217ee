"""What every route shares, injected (never imported as globals): the server's state
(settings, the read ``Store``, the write engine, the events sink, where OpenLineage batches
are applied) and the caller's scope.

Authentication: a request that carries ``Authorization: Bearer <token>`` must carry an
active token whose scope covers the route (401 unknown or revoked, 403 too narrow),
whatever else. A request without one is served only when the store holds no active token
AND the server may run open (it listens on a loopback address, or ``--insecure``);
otherwise 401. The lookup is one indexed read per request, so a revocation takes effect
at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import Engine

from metatrail.consumer.query.store import Store
from metatrail.consumer.server.appliers import Appliers
from metatrail.consumer.server.errors import ApiError
from metatrail.consumer.server.events import EventSink
from metatrail.consumer.server.tokens import TokenInfo, active_token_count, allows, lookup
from metatrail.schemas.settings import Settings

_WHAT = {"read": "read", "write": "write (POST /events, retire)", "admin": "administer (replay, tokens)"}
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass
class ServerState:
    """Everything the routes use, built by ``create_app`` and closed at shutdown."""

    settings: Settings
    store: Store
    engine: Engine
    sink: EventSink
    #: Whether a request without a token is served when the store holds no active token.
    open_without_tokens: bool
    appliers: Appliers

    def close(self) -> None:
        self.appliers.close()
        self.sink.close()
        self.engine.dispose()


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.metatrail
    return state


State = Annotated[ServerState, Depends(server_state)]


def get_store(state: State) -> Store:
    return state.store


StoreDep = Annotated[Store, Depends(get_store)]


def authenticate(state: ServerState, token: str | None, scope: str) -> TokenInfo | None:
    """The caller's token checked against ``scope`` (the rules of the module docstring):
    its info, or None when the request is served openly. Raises ``ApiError`` 401/403.
    Shared by the API (bearer header) and the web UI (its session cookie)."""
    if token is not None:
        info = lookup(state.engine, token)
        if info is None:
            raise ApiError(401, "unauthorized", "unknown or revoked token", _CHALLENGE)
        if not allows(info.scope, scope):
            raise ApiError(403, "forbidden", f"a {info.scope} token cannot {_WHAT[scope]}; it needs a {scope} token")
        return info
    if state.open_without_tokens and active_token_count(state.engine) == 0:
        return None
    raise ApiError(401, "unauthorized", "this server needs a bearer token (metatrail token create)", _CHALLENGE)


def require(scope: str) -> Callable[..., Any]:
    """A dependency that lets the request through with a token of at least ``scope``
    (or openly, see the module docstring); raises 401/403 ``ApiError`` otherwise."""

    def check(request: Request, state: State) -> TokenInfo | None:
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, "unauthorized", "expected the header 'Authorization: Bearer <token>'", _CHALLENGE)
            return authenticate(state, token.strip(), scope)
        return authenticate(state, None, scope)

    return check


__all__ = ["ServerState", "State", "StoreDep", "authenticate", "require", "server_state"]
