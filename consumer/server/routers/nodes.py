"""``/artifacts``, ``/executions``, ``/contexts``: filtered, ordered, paged lists and single
nodes with their neighbourhood; ``/artifacts/latest`` (warm start) and retiring an
artifact (through an event, the one apply path)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.dependencies import State, StoreDep, require
from metatrail.consumer.server.paging import MAX_PAGE_SIZE, decode_page_token, encode_page_token, query_scope
from metatrail.consumer.server.responses import JSONBody, json_body
from metatrail.consumer.server.routers.events import result_json
from metatrail.schemas.parse import dump_event

router = APIRouter(dependencies=[Depends(require("read"))])
write_router = APIRouter(dependencies=[Depends(require("write"))])

_PAGES = {"artifact": hm.ArtifactPage, "execution": hm.ExecutionPage, "context": hm.ContextPage}
_DETAILS = {"artifact": hm.ArtifactDetail, "execution": hm.ExecutionDetail, "context": hm.ContextDetail}

FilterQ = Annotated[str | None, Query(max_length=10_000, description=(
    "The filter language: `type = 'Model' AND properties.accuracy > 0.9`, `context.name = 'run-7'`, "
    "`upstream_of('<id>')`... A malformed filter is answered 400 with the position."))]
OrderQ = Annotated[str | None, Query(max_length=300, description=(
    "A field and optional direction: `created_at`, `name desc`, `-properties.accuracy`. Default created_at."))]
SizeQ = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")]
TokenQ = Annotated[str | None, Query(max_length=4096, description="next_page_token of the previous page.")]
CountQ = Annotated[bool, Query(description="Also answer `total`, how many match.")]
RetiredQ = Annotated[bool, Query(description="Include placeholders and DELETED/ABANDONED artifacts.")]
IdPath = Annotated[str, Path(max_length=64, description="A full id or an unambiguous prefix (at least 4 characters).")]


def _list(kind: str, store: Any, filter: str | None, order_by: str | None, page_size: int, page_token: str | None,
          count: bool, include_retired: bool) -> dict[str, Any]:
    scope = query_scope(kind, filter, order_by, include_retired)
    cursor = decode_page_token(page_token, scope) if page_token else None
    page = store.find(kind, filter, order_by=order_by, limit=page_size, cursor=cursor, include_retired=include_retired)
    body: dict[str, Any] = {"items": [n.to_json() for n in page.items],
                            "next_page_token": encode_page_token(page.next_cursor, scope) if page.next_cursor else None}
    if count:
        body["total"] = store.count(kind, filter, include_retired=include_retired)
    return body


def _add_routes(kind: str, plural: str) -> None:
    page_model, detail_model = _PAGES[kind], _DETAILS[kind]

    def list_nodes(store: StoreDep, filter: FilterQ = None, order_by: OrderQ = None, page_size: SizeQ = 50,
                   page_token: TokenQ = None, count: CountQ = False, include_retired: RetiredQ = False) -> JSONBody:
        return json_body(_list(kind, store, filter, order_by, page_size, page_token, count, include_retired))

    def get_node(store: StoreDep, node_id: IdPath) -> JSONBody:
        return json_body(store.detail(node_id, (kind,)).to_json())  # type: ignore[arg-type]

    list_nodes.__doc__ = f"One page of {plural} matching `filter`, in `order_by` order (keyset paging: stable while events arrive)."
    get_node.__doc__ = f"One {kind} by id or unambiguous prefix, with its neighbourhood."
    router.add_api_route(f"/{plural}", list_nodes, methods=["GET"], response_model=page_model,
                         name=f"list_{plural}", summary=f"List {plural}")
    if kind == "artifact":
        router.add_api_route("/artifacts/latest", latest_artifact, methods=["GET"], response_model=hm.LatestOut,
                             summary="Newest LIVE artifact of a type (warm start)")
    router.add_api_route(f"/{plural}/{{node_id}}", get_node, methods=["GET"], response_model=detail_model,
                         name=f"get_{kind}", summary=f"Get one {kind}")


def latest_artifact(
    store: StoreDep,
    type: Annotated[str, Query(min_length=1, max_length=128, description="Artifact type, e.g. Model.")],
    context: Annotated[str | None, Query(max_length=255, description="Only in this context (id or name).")] = None,
    where: FilterQ = None,
) -> JSONBody:
    """The newest LIVE artifact of `type` (optionally in `context`, matching `where`), or
    `{"artifact": null}`: what `latest()` warm-starts from."""
    found = store.latest(type, context=context, where=where)
    return json_body({"artifact": found.to_json() if found is not None else None})


for _kind, _plural in (("artifact", "artifacts"), ("execution", "executions"), ("context", "contexts")):
    _add_routes(_kind, _plural)


@write_router.post("/artifacts/{node_id}/retire", response_model=hm.RetireOut, summary="Retire an artifact")
async def retire(state: State, node_id: IdPath, request: hm.RetireRequest) -> JSONBody:
    """Set an artifact's state (DELETED, ABANDONED...; LIVE revives) through an
    `artifact.state_changed` event, applied like any other. Needs a write token."""
    from metatrail.schemas.events import ArtifactStateChanged

    def run() -> dict[str, Any]:
        full_id = state.store.artifact(node_id).id
        event = ArtifactStateChanged(artifact_id=uuid.UUID(full_id), state=request.state, reason=request.reason)
        result = state.sink.submit([dump_event(event)])
        node = state.store.get(full_id, ("artifact",))
        return {"id": full_id, "state": node.state, "event_id": str(event.event_id), "result": result_json(result)}

    return json_body(await run_in_threadpool(run))
