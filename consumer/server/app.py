"""The team server's ASGI application: ``create_app(settings, store)``.

Routes live in one router per resource under ``/api/v1`` (``routers/``); what they share
(the store, the write engine, the events sink, authentication) is injected from
``app.state.metatrail`` (``dependencies``). ``/`` and the other pages outside ``/api`` are
the web UI's (``metatrail.consumer.web``), mounted on this app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from metatrail.consumer.query.store import Store
from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.appliers import Appliers
from metatrail.consumer.server.dependencies import ServerState
from metatrail.consumer.server.docs import DOCS_URL, install_docs
from metatrail.consumer.server.errors import install_error_handlers
from metatrail.consumer.server.events import EventSink
from metatrail.consumer.server.routers import (
    cache,
    deadletters,
    events,
    graph,
    nodes,
    openlineage,
    status,
    tokens,
)
from metatrail.consumer.store.engine import write_engine
from metatrail.schemas.settings import Settings

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
#: Every route may answer these, always as ``ErrorResponse``.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status_code: {"model": hm.ErrorResponse, "description": description}
    for status_code, description in (
        (400, "Bad request (a malformed filter names its position)"),
        (401, "Missing, unknown or revoked token"),
        (403, "The token's scope does not cover this route"),
        (404, "No such node or route"),
        (409, "An id prefix matches several nodes (candidates listed)"),
        (422, "A parameter is missing or out of range"),
        (500, "Internal error (logged on the server)"),
        (503, "The store or broker is unavailable; retry"),
    )
}
DESCRIPTION = """The lineage graph of metatrail over HTTP: lists with the filter language and
keyset paging, nodes with their neighbourhood, lineage, comparisons, diffs and impact,
metric histories, event delivery (`POST /events`), OpenLineage events (`POST /lineage`,
`/lineage/batch`), dead letters, status, tokens.

Authentication: `Authorization: Bearer <token>` (`metatrail token create --scope read|write|admin`).
Errors are always `{"error": {"code": ..., "message": ...}}`."""


def create_app(settings: Settings, store: Store, *, open_without_tokens: bool = False,
               owns_store: bool = False, start_appliers: bool = False) -> FastAPI:
    """The API on ``store`` (its engine serves reads; a second engine on the same URL
    serves writes: apply needs transactions, which the read engine skips on servers).

    ``open_without_tokens``: serve requests without a token while the store holds no
    active token (``metatrail serve`` sets it only on a loopback address or with
    ``--insecure``). The app owns the write engine; the caller keeps owning ``store``
    unless ``owns_store`` (a worker process's app closes it at shutdown).
    ``start_appliers``: start the processes that apply OpenLineage batches when the app
    starts (``metatrail serve``), rather than with the first batch. They are spawned, and a
    spawned process imports the program's main module: a program that builds and runs the
    app itself (not ``metatrail serve``, not an ASGI server's command line) guards its
    entry with ``if __name__ == "__main__":``, as for any spawned process.
    """
    engine = write_engine(store.engine)
    state = ServerState(settings, store, engine, EventSink(settings, engine), open_without_tokens,
                        Appliers(engine, settings, preload=(openlineage.__name__,)))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_appliers:
            state.appliers.start()
        yield
        state.close()
        if owns_store:
            store.close()

    app = FastAPI(title="metatrail", description=DESCRIPTION, version="1", openapi_url=OPENAPI_URL,
                  docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.metatrail = state
    install_error_handlers(app)
    routers = ((nodes, "nodes"), (graph, "graph"), (events, "events"), (openlineage, "openlineage"),
               (deadletters, "dead letters"), (status, "status"), (cache, "producers"), (tokens, "tokens"))
    for module, tag in routers:
        app.include_router(module.router, prefix=API_PREFIX, tags=[tag], responses=ERROR_RESPONSES)
    app.include_router(nodes.write_router, prefix=API_PREFIX, tags=["nodes"], responses=ERROR_RESPONSES)
    install_docs(app, OPENAPI_URL)

    from metatrail.consumer.web.mount import mount_ui  # the UI builds on the server's modules: imported late

    mount_ui(app, api_info={"name": "metatrail", "api": API_PREFIX, "openapi": OPENAPI_URL, "docs": DOCS_URL})
    return app
