"""A small client of the team server's API (``metatrail serve``), on the standard library
only (urllib): the producer's base install stays light.

Errors follow the transports' rule (``retriable``): a connection error, a timeout, 429
and 5xx raise ``TransientTransportError`` (retrying may succeed); any other answer that
is not a success raises ``HTTPStatusError`` (a ``TransportError`` carrying the status and
the server's message). The token travels only in the ``Authorization`` header; it is
never logged or put in an error message.
"""

from __future__ import annotations

import gzip
import json
import socket
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from metatrail.schemas.errors import TransientTransportError, TransportError
from metatrail.schemas.settings import Settings

API_PREFIX = "/api/v1"


class HTTPStatusError(TransportError):
    """The server answered with a status that retrying the same request will not change."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"the server answered {status}: {message}")
        self.status = status


class ApiClient:
    """Requests to ``<base_url>/api/v1``. Blocking; safe to share between threads (each
    request opens its own connection)."""

    def __init__(self, base_url: str, token: SecretStr | None = None, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiClient:
        if not settings.http_url:
            raise TransportError("METATRAIL_HTTP_URL is not set")
        return cls(settings.http_url, settings.http_token, settings.http_timeout_s)

    def request(self, method: str, path: str, *, query: Mapping[str, str] | None = None, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Any:
        """The decoded JSON answer of a successful request (see the module docstring for
        what is raised otherwise)."""
        url = f"{self.base_url}{API_PREFIX}{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        all_headers = {"Accept": "application/json", "User-Agent": "metatrail-producer", **(headers or {})}
        if self._token is not None:
            all_headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        req = urllib.request.Request(url, data=body, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            raise _status_error(exc.code, exc.read(), method, path) from None
        except (urllib.error.URLError, OSError, socket.timeout) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientTransportError(f"{method} {self.base_url}{API_PREFIX}{path}: {reason}") from None
        try:
            return json.loads(data) if data else None
        except ValueError as exc:
            raise TransientTransportError(f"{method} {path}: the server's answer is not JSON") from exc

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query={k: v for k, v in query.items() if v is not None})

    def post_events(self, payloads: Sequence[bytes]) -> dict[str, Any]:
        """POST events as gzip'd NDJSON; the server's counts (applied, duplicates,
        dead_lettered, dead_letters...)."""
        body = gzip.compress(b"\n".join(payloads) + b"\n", compresslevel=5)
        answer = self.request("POST", "/events", body=body, headers={
            "Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
        return answer if isinstance(answer, dict) else {}


def _status_error(status: int, body: bytes, method: str, path: str) -> TransportError:
    try:
        message = str(json.loads(body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = body[:200].decode("utf-8", "replace").strip() or "no message"
    if status == 429 or status >= 500:
        return TransientTransportError(f"{method} {path}: the server answered {status}: {message}")
    return HTTPStatusError(status, f"{method} {path}: {message}")
