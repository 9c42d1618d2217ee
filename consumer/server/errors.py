"""Every error the API answers is JSON ``{"error": {"code", "message", ...}}``: our error
tree mapped to statuses here, once, and Starlette's own 404/405/422/500 rewritten to the
same shape. Never an HTML page, never a traceback (a 500 is logged on the server with its
traceback; the client gets one line).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from metatrail.schemas.errors import (
    AmbiguousIdError,
    ConfigError,
    EventValidationError,
    FilterError,
    MetatrailError,
    NotFoundError,
    StoreError,
    TransportError,
)

log = logging.getLogger("metatrail.server")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 406: "not_acceptable", 409: "conflict", 411: "length_required",
               413: "payload_too_large", 415: "unsupported_media_type", 422: "invalid_request",
               429: "too_many_requests", 500: "internal", 503: "unavailable"}


#: The query layer's parameter names, as this API spells them.
_PARAMS = {"cursor": "page_token", "limit": "page_size", "max_hops": "depth"}


class ApiError(Exception):
    """An answer other than success, raised anywhere in a request: status, a stable
    machine code, one line for people, and optional extra fields."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt whole when it crosses processes (an apply process's answer to a bad body).
        return (_api_error, (self.status, self.code, self.message, self.headers, self.extra))


def _api_error(status: int, code: str, message: str, headers: dict[str, str] | None,
               extra: dict[str, Any]) -> ApiError:
    return ApiError(status, code, message, headers, **extra)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _from_metatrail(exc: MetatrailError) -> ApiError:
    if isinstance(exc, AmbiguousIdError):
        candidates = [{"kind": k, "id": i, "name": n} for k, i, n in exc.candidates]
        return ApiError(409, "ambiguous_id", str(exc), candidates=candidates)
    if isinstance(exc, NotFoundError):
        return ApiError(404, "not_found", str(exc))
    if isinstance(exc, FilterError):
        message = f"{_PARAMS.get(exc.param, exc.param)}: {exc.detail}" if exc.param else str(exc)
        return ApiError(400, "bad_request", message, position=exc.position)
    if isinstance(exc, EventValidationError):
        return ApiError(400, "invalid_event", str(exc))
    if exc.retriable:  # a database or broker that is unwell: the client retries
        return ApiError(503, "unavailable", str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, (StoreError, TransportError)):
        log.error("request failed: %s", exc)
        return ApiError(500, "store_error" if isinstance(exc, StoreError) else "transport_error", str(exc))
    if isinstance(exc, ConfigError):
        log.error("request failed on configuration: %s", exc)
    return ApiError(500, "internal", str(exc))


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error the one JSON shape."""

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    async def metatrail_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MetatrailError)
        err = _from_metatrail(exc)
        return error_response(err.status, err.code, err.message, err.headers, **err.extra)

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return error_response(status, _HTTP_CODES.get(status, f"http_{status}"), detail,
                              dict(exc.headers) if exc.headers else None)

    async def validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid_request", _validation_message(exc))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal", f"internal error ({type(exc).__name__}); see the server's log")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(MetatrailError, metatrail_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(Exception, unexpected)
