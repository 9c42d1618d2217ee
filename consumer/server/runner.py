"""Running the app: ``serve`` checks who may reach it, then hands it to uvicorn.

Exposure rule: with no active token in the store, the server answers without
authentication, so it listens only on a loopback address; a non-loopback ``--host`` with
no token refuses to start (``ConfigError``, one line) unless ``insecure``, which logs a
loud warning. SIGTERM / SIGINT: uvicorn stops accepting connections, lets the requests in
flight finish (at most ``METATRAIL_SERVER_SHUTDOWN_TIMEOUT_S``), runs the app's shutdown
(engines closed) and returns.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from typing import Any

from metatrail.consumer.query.store import Store
from metatrail.consumer.server.app import create_app
from metatrail.consumer.server.tokens import active_token_count
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.migrate import upgrade
from metatrail.schemas.errors import ConfigError
from metatrail.schemas.settings import Settings

log = logging.getLogger("metatrail.server")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or name) is a loopback address only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, active_tokens: int, insecure: bool) -> None:
    """Raise ``ConfigError`` when serving on ``host`` would expose an open server."""
    if active_tokens == 0 and not is_loopback(host) and not insecure:
        raise ConfigError(
            f"refusing to serve on {host} with no token in the store: anyone who reaches it could read and write; "
            "create one first (metatrail token create --scope read) or pass --insecure"
        )


def build(settings: Settings, store_url: str, host: str, insecure: bool) -> tuple[Store, object]:
    """The migrated store and the app for ``host`` (after the exposure check)."""
    engine = open_engine(store_url)  # a service creates its store (reads alone create nothing)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    store = Store.open(store_url)
    try:
        tokens = active_token_count(store.engine)
        check_exposure(host, tokens, insecure)
    except BaseException:
        store.close()
        raise
    if insecure and tokens == 0 and not is_loopback(host):
        log.warning("!!! --insecure: serving %s on %s WITHOUT AUTHENTICATION: anyone who reaches it can read, "
                    "write and replay; create a token (metatrail token create) to close it", store_url, host)
    return store, create_app(settings, store, open_without_tokens=is_loopback(host) or insecure)


def _server_class(uvicorn: Any) -> Any:
    class Server(uvicorn.Server):  # type: ignore[misc,name-defined]
        """uvicorn's server, except that a SIGTERM / SIGINT that ended a graceful shutdown
        is not raised again afterwards: the drain succeeded, the process exits 0 (as
        ``metatrail consume`` does), and an orchestrator sees a clean stop."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return Server


def serve(settings: Settings, *, host: str, port: int, store_url: str, insecure: bool = False,
          sock: socket.socket | None = None) -> None:
    """Serve until SIGTERM / SIGINT (blocking). Raises ``ConfigError`` (exposure rule,
    bad store URL, missing extra)."""
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError(f"metatrail serve needs the server extra: pip install 'metatrail[server]' ({exc})") from exc
    store, app = build(settings, store_url, host, insecure)
    try:
        config = uvicorn.Config(app, host=host, port=port, log_level="info", server_header=False,
                                timeout_graceful_shutdown=settings.server_shutdown_timeout_s, lifespan="on")
        server = _server_class(uvicorn)(config)
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        store.close()
