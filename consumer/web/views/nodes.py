"""``/artifacts/{id}``, ``/executions/{id}``, ``/contexts/{id}`` (ids by unambiguous
prefix): a node with its neighbourhood. An execution shows its state, timing, params,
code version, environment, inputs and outputs, metrics (charted when they have steps),
its error and where a cached result came from; an artifact its properties, producers,
consumers, a small lineage preview and the retire form (write token); a context its
members, parents and children."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.errors import ApiError
from metatrail.consumer.server.routers.nodes import retire
from metatrail.consumer.web.auth import read_form, same_origin, session_token
from metatrail.consumer.web.ids import short_ids
from metatrail.consumer.web.pages import View, render
from metatrail.consumer.web.views.lineage import explore
from metatrail.schemas.errors import MetatrailError

#: Members of a context listed on its page.
MEMBERS = 100
#: Nodes of an artifact page's lineage preview.
PREVIEW_NODES = 40
RETIRE_STATES = ("DELETED", "ABANDONED", "LIVE")


def _refs(detail: dict[str, Any]) -> list[str]:
    ids = [detail["id"]]
    for name in ("contexts", "producers", "consumers", "inputs", "outputs", "parents", "children"):
        ids += [r["id"] for r in detail.get(name, [])]
    return ids


def _metrics(view: View, execution_id: str) -> list[dict[str, Any]]:
    """Per key: the last value, how many samples, whether it has several steps (charted)."""
    out: dict[str, dict[str, Any]] = {}
    for point in view.store.metrics(execution_id):
        entry = out.setdefault(point.key, {"key": point.key, "samples": 0, "steps": set()})
        entry["samples"] += 1
        entry["value"] = point.value
        if point.step is not None:
            entry["steps"].add(point.step)
    return [{"key": e["key"], "samples": e["samples"], "value": e["value"], "chart": len(e["steps"]) > 1}
            for e in out.values()]


def artifact(view: View) -> dict[str, Any]:
    detail = view.store.detail(view.ref, ("artifact",)).to_json()
    preview = explore(view.store, detail["id"], "both", 1, [], PREVIEW_NODES)
    return {"title": f"{detail['type']} {detail['name'] or ''}".strip(), "node": detail, "preview": preview,
            "retire_states": RETIRE_STATES, "short": short_ids(view.store, _refs(detail))}


def execution(view: View) -> dict[str, Any]:
    store = view.store
    detail = store.detail(view.ref, ("execution",)).to_json()
    ids = _refs(detail) + [detail.get("cached_from")]
    metrics_of = detail["cached_from"] if detail["state"] == "CACHED" and detail.get("cached_from") else detail["id"]
    metrics = _metrics(view, detail["id"]) or (_metrics(view, metrics_of) if metrics_of != detail["id"] else [])
    return {"title": f"{detail['type']} {detail['state']}", "node": detail, "metrics": metrics,
            "metrics_of": metrics_of, "short": short_ids(store, ids)}


def context(view: View) -> dict[str, Any]:
    store = view.store
    detail = store.detail(view.ref, ("context",)).to_json()
    where = "context.id = '{}'".format(detail["id"])
    executions = [e.to_json() for e in store.find("execution", where, order_by="created_at", limit=MEMBERS).items]
    artifacts = [a.to_json() for a in store.find("artifact", where, order_by="created_at", limit=MEMBERS).items]
    ids = _refs(detail) + [e["id"] for e in executions] + [a["id"] for a in artifacts]
    return {"title": f"{detail['type']} {detail['name'] or ''}".strip(), "node": detail, "executions": executions,
            "artifacts": artifacts, "short": short_ids(store, ids)}


def install_retire(app: FastAPI) -> None:
    """``POST /artifacts/{ref}/retire`` from the artifact page's form: the API's retire
    (an ``artifact.state_changed`` event through the one apply path), with the session's
    token, which must have the write scope."""

    async def retire_form(request: Request, ref: str) -> Response:
        state = request.app.state.metatrail
        form = await read_form(request)
        try:
            if not same_origin(request):
                raise ApiError(403, "forbidden", "this form must be sent from this server's own page")
            session_token(request, state, "write")
            body = hm.RetireRequest(state=form.get("state", "DELETED"), reason=form.get("reason") or None)
            await retire(state, ref, body)
        except (ApiError, MetatrailError, ValueError) as exc:
            status = exc.status if isinstance(exc, ApiError) else 400
            message = exc.message if isinstance(exc, ApiError) else str(exc).splitlines()[0]
            return render("error.html", status, request=request, status=status, message=message, candidates=[],
                          title=f"Error {status}", json_url=None)
        return RedirectResponse(f"/artifacts/{ref}", status_code=303)

    app.add_api_route("/artifacts/{ref}/retire", retire_form, methods=["POST"], include_in_schema=False)


PAGES = [("/artifacts/{ref}", "artifact.html", artifact), ("/executions/{ref}", "execution.html", execution),
         ("/contexts/{ref}", "context.html", context)]
