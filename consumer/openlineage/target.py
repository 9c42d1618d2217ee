"""An OpenLineage HTTP endpoint (Marquez, DataHub, ``metatrail serve``...) to send
RunEvents to: ``POST <url>/<endpoint>`` with the event as JSON, as the OpenLineage
client's HTTP transport does, with an optional bearer token."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
from typing import Any

import orjson

from metatrail.schemas.errors import TransientTransportError, TransportError

log = logging.getLogger("metatrail.openlineage")

#: Statuses worth retrying: the target is overloaded, restarting or timed out.
_RETRIABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpTarget:
    """Posts one event per request. Blocking; not thread-safe (one per forwarder)."""

    def __init__(self, url: str, *, endpoint: str = "api/v1/lineage", api_key: str | None = None,
                 timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise TransportError(f"the OpenLineage target must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/") + "/" + endpoint.lstrip("/")
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.timeout_s = timeout_s

    def send(self, event: dict[str, Any]) -> bool:
        """Post ``event``. True: accepted (2xx). False: refused for good (a 4xx other than
        408/425/429: the target will never take it; logged). Raises
        ``TransientTransportError`` when a retry may succeed (unreachable, 5xx, timeout)."""
        request = urllib.request.Request(self.url, data=orjson.dumps(event), headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
                return True
        except urllib.error.HTTPError as exc:
            body = exc.read()[:500].decode("utf-8", "replace")
            if exc.code in _RETRIABLE:
                raise TransientTransportError(f"{self.url} answered {exc.code}: {body}") from exc
            log.error("%s refused a RunEvent of run %s for good (%d): %s", self.url,
                      event.get("run", {}).get("runId"), exc.code, body)
            return False
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise TransientTransportError(f"cannot reach {self.url}: {exc}") from exc
