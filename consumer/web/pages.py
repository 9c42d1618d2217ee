"""One way to serve a page: a view function builds JSON-ready data from the request; the
same data renders the page's template or is the page's JSON twin (``.json``). A view
never sees HTML and a template never queries: the UI and its data cannot drift.

Errors: in a JSON twin, our errors reach the app's JSON error handlers unchanged; in a
page they render the error page with the same status and message (an ambiguous prefix
lists its candidates as links). Without a valid session a page redirects to ``/login``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from metatrail.consumer.query.store import Store
from metatrail.consumer.server.dependencies import ServerState
from metatrail.consumer.server.errors import ApiError
from metatrail.consumer.server.responses import json_body
from metatrail.consumer.server.tokens import TokenInfo
from metatrail.consumer.web.assets import MISSING_MESSAGE, TEMPLATES
from metatrail.consumer.web.auth import session_token
from metatrail.schemas.errors import AmbiguousIdError, FilterError, MetatrailError, NotFoundError


@dataclass
class View:
    """What a view function gets: the request's arguments, the store, the caller."""

    request: Request
    state: ServerState
    #: The id (or prefix) in the path of a node page, without ``.json``.
    ref: str
    token: TokenInfo | None
    as_json: bool

    @property
    def store(self) -> Store:
        return self.state.store

    def arg(self, name: str, default: str | None = None, max_length: int = 10_000) -> str | None:
        """A query argument, stripped; empty counts as absent. Raises ``FilterError`` when
        longer than ``max_length``."""
        value = self.request.query_params.get(name)
        if value is None or not value.strip():
            return default
        if len(value) > max_length:
            raise FilterError(f"{name}: at most {max_length} characters")
        return value.strip()

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        """An integer argument within [low, high]; raises ``FilterError`` naming it."""
        text = self.arg(name, max_length=20)
        if text is None:
            return default
        try:
            value = int(text)
        except ValueError:
            raise FilterError(f"{name}: expected a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise FilterError(f"{name}: must be between {low} and {high}, got {value}")
        return value

    def list_arg(self, name: str, limit: int) -> list[str]:
        """A comma-separated argument (also repeated), without duplicates, in order;
        raises ``FilterError`` beyond ``limit`` items."""
        items: list[str] = []
        for value in self.request.query_params.getlist(name):
            items += [part.strip() for part in value.split(",") if part.strip()]
        items = list(dict.fromkeys(items))
        if len(items) > limit:
            raise FilterError(f"{name}: at most {limit} items, got {len(items)}")
        return items

    def flag(self, name: str) -> bool:
        return (self.arg(name, max_length=10) or "").lower() in ("1", "true", "on", "yes")

    def url(self, **changes: Any) -> str:
        """This page's URL with some arguments changed (None removes one; a list is
        joined with commas): how links keep the rest of the view's state."""
        params = {k: v for k, v in self.request.query_params.items()}
        for key, value in changes.items():
            if value is None or value == "" or value == []:
                params.pop(key, None)
            else:
                params[key] = ",".join(value) if isinstance(value, (list, tuple)) else str(value)
        path = self.request.url.path
        if path.endswith(".json"):
            path = "/" if path == "/index.json" else path[:-5]
        return path + ("?" + urlencode(params) if params else "")


Builder = Callable[[View], dict[str, Any]]


def _when(value: Any) -> str:
    """An ISO time as 'YYYY-MM-DD HH:MM:SS' (UTC), '' for none."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _duration(start: Any, end: Any) -> str:
    if not start or not end:
        return ""
    seconds = (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def _value(value: Any) -> str:
    """A property or metric value for a cell: floats to 4 significant decimals."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e6 else f"{value:.4f}".rstrip("0").rstrip(".")
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


ENV = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]),
                  trim_blocks=True, lstrip_blocks=True)
ENV.filters.update(when=_when, value=_value)
ENV.globals.update(duration=_duration)


def render(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    short: dict[str, str] = context.get("short") or {}
    # an id a view did not shorten is shown whole: a cut of our own could name two nodes
    context.setdefault("sid", lambda node_id: short.get(node_id) or (node_id or ""))
    return HTMLResponse(ENV.get_template(template).render(**context), status_code=status_code)


def _error_page(request: Request, exc: MetatrailError | ApiError) -> HTMLResponse:
    if isinstance(exc, ApiError):
        status, message, candidates = exc.status, exc.message, []
    else:
        status = 409 if isinstance(exc, AmbiguousIdError) else 404 if isinstance(exc, NotFoundError) else \
            400 if isinstance(exc, FilterError) else 503 if exc.retriable else 500
        message = str(exc)
        candidates = [{"kind": k, "id": i, "name": n} for k, i, n in getattr(exc, "candidates", ())]
    return render("error.html", status, request=request, status=status, message=message, candidates=candidates,
                  title=f"Error {status}", json_url=None)


def serve_page(request: Request, template: str, build: Builder, ref: str, as_json: bool,
               assets_missing: Sequence[str]) -> Response:
    state: ServerState = request.app.state.metatrail
    if assets_missing and not as_json:
        return PlainTextResponse(MISSING_MESSAGE + "\n", status_code=503)
    try:
        token = session_token(request, state, "read")
    except ApiError as exc:
        if as_json:
            raise
        if exc.status == 401:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?next=" + quote(target, safe=""), status_code=303)
        return _error_page(request, exc)
    view = View(request, state, ref, token, as_json)
    try:
        data = build(view)
    except MetatrailError as exc:
        if as_json:
            raise
        return _error_page(request, exc)
    if as_json:
        return json_body(data)
    json_url = request.url.path.rstrip("/") + ("/index.json" if request.url.path == "/" else ".json")
    if request.url.query:
        json_url += "?" + request.url.query
    return render(template, request=request, view=view, json_url=json_url, signed_in=token is not None, **data)


def add_page(app: FastAPI, path: str, template: str, build: Builder, assets_missing: Sequence[str]) -> None:
    """Serve ``build``'s data at ``path`` as HTML and at its JSON twin (``path.json``;
    ``/index.json`` for ``/``; a node page's ``{ref}`` may end with ``.json``)."""
    has_ref = "{ref}" in path

    def page(request: Request) -> Response:
        ref = str(request.path_params.get("ref", ""))
        as_json = request.url.path.endswith(".json")
        if has_ref and ref.endswith(".json"):
            ref = ref[:-5]
        return serve_page(request, template, build, ref, as_json, assets_missing)

    page.__name__ = "ui_" + (path.strip("/").replace("/", "_").replace("{ref}", "node") or "home")
    app.add_api_route(path, page, methods=["GET"], include_in_schema=False)
    if not has_ref:
        app.add_api_route("/index.json" if path == "/" else path + ".json", page, methods=["GET"],
                          include_in_schema=False)


__all__ = ["Builder", "View", "add_page", "render", "serve_page"]
