"""The UI's sessions under the server's token rules.

A server open without tokens (loopback, no token in the store) serves the pages to
anyone who can reach it. Otherwise the user pastes a token once on ``/login``; it is kept
in the cookie ``metatrail_token``: HttpOnly (page scripts never read it), SameSite=Strict
(another site cannot send it along: no cross-site request forgery of a retire), Secure
behind HTTPS, and a session cookie (gone when the browser closes). Every request checks it
as the API checks a bearer header (one lookup, so a revoked token stops at once). The
token never appears in a URL, a page or a log line: login is a POST, and the access log
shows paths only. A script may send ``Authorization: Bearer`` to the JSON twins instead.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from metatrail.consumer.server.dependencies import ServerState, authenticate
from metatrail.consumer.server.errors import ApiError
from metatrail.consumer.server.tokens import TokenInfo, lookup

COOKIE = "metatrail_token"
#: Longest form body /login reads (a token is ~50 characters).
MAX_FORM_BYTES = 4096


def session_token(request: Request, state: ServerState, scope: str) -> TokenInfo | None:
    """The caller's token (bearer header, else the session cookie) checked for ``scope``;
    None when served openly. Raises ``ApiError`` 401/403 as the API does."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "expected the header 'Authorization: Bearer <token>'")
        return authenticate(state, token.strip(), scope)
    return authenticate(state, request.cookies.get(COOKIE) or None, scope)


def same_origin(request: Request) -> bool:
    """Whether a form post comes from this server's own pages (Origin, else Referer,
    names this host); a second guard beside the SameSite cookie."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source:
        return False
    return urlsplit(source).netloc == request.headers.get("host", "")


async def read_form(request: Request) -> dict[str, str]:
    """A small urlencoded form body (first value of each field); larger bodies are cut."""
    body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}


def _safe_next(target: str | None) -> str:
    """Only a path on this server (no scheme, no host: never an open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def install_login(app: FastAPI) -> None:
    """``GET/POST /login`` and ``POST /logout``."""
    from metatrail.consumer.web.pages import render

    def login_page(request: Request) -> Response:
        return render("login.html", request=request, next=_safe_next(request.query_params.get("next")), error=None,
                      title="Sign in", json_url=None)

    async def login(request: Request) -> Response:
        form = await read_form(request)
        target = _safe_next(form.get("next"))
        token = form.get("token", "").strip()
        state: ServerState = request.app.state.metatrail
        if not same_origin(request):
            return render("login.html", 403, request=request, next=target, title="Sign in", json_url=None,
                          error="this form must be sent from this server's own page")
        if not token or lookup(state.engine, token) is None:
            return render("login.html", 401, request=request, next=target, title="Sign in", json_url=None,
                          error="unknown or revoked token")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                            path="/")
        return response

    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    app.add_api_route("/login", login_page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/login", login, methods=["POST"], include_in_schema=False)
    app.add_api_route("/logout", logout, methods=["POST"], include_in_schema=False)


__all__ = ["COOKIE", "install_login", "read_form", "same_origin", "session_token"]
