"""Running the app: ``serve`` checks who may reach it, then hands it to uvicorn.

Exposure rule: with no active token in the store, the server answers without
authentication, so it listens only on a loopback address; a non-loopback ``--host`` with
no token refuses to start (``ConfigError``, one line) unless ``insecure``, which logs a
loud warning. SIGTERM / SIGINT: uvicorn stops accepting connections, lets the requests in
flight finish (at most ``METATRAIL_SERVER_SHUTDOWN_TIMEOUT_S``), runs the app's shutdown
(engines closed) and returns.

Workers (``METATRAIL_SERVER_WORKERS`` > 1): uvicorn's supervisor binds the port once and
spawns that many worker processes that accept on it, each with its own app, store and
connection pools, built by ``WorkerApp`` after the parent migrated the store and checked
the exposure rule. SIGTERM to the parent reaches every worker, and each drains as above.
Python runs one request's work at a time per process, so this is what lets ingest into a
database server use every core.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from metatrail.consumer.query.store import Store
from metatrail.consumer.server.app import create_app
from metatrail.consumer.server.tokens import active_token_count
from metatrail.consumer.service.gcpolicy import tune_for_batches
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
    store = prepare(store_url, host, insecure)
    return store, create_app(settings, store, open_without_tokens=is_loopback(host) or insecure, start_appliers=True)


def prepare(store_url: str, host: str, insecure: bool) -> Store:
    """The store, migrated, once serving it on ``host`` passed the exposure check."""
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
    return store


@dataclass(frozen=True)
class WorkerApp:
    """The app of one worker process: uvicorn pickles this into each process it spawns,
    which calls it (an app factory) to open its own store and build its own app."""

    settings: Settings
    store_url: str
    open_without_tokens: bool

    def __call__(self) -> object:
        logging.getLogger("metatrail").setLevel(logging.INFO)
        tune_for_batches()  # as the parent's CLI did for itself: a worker applies batches
        store = Store.open(self.store_url)
        return create_app(self.settings, store, open_without_tokens=self.open_without_tokens, owns_store=True,
                          start_appliers=True)


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
    options: dict[str, Any] = {"host": host, "port": port, "log_level": "info", "server_header": False,
                               "timeout_graceful_shutdown": settings.server_shutdown_timeout_s, "lifespan": "on"}
    if settings.server_workers > 1:
        prepare(store_url, host, insecure).close()
        factory = WorkerApp(settings, store_url, is_loopback(host) or insecure)
        config = uvicorn.Config(factory, factory=True, workers=settings.server_workers, **options)
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, sockets=[sock if sock is not None else config.bind_socket()]).run()
        return
    store, app = build(settings, store_url, host, insecure)
    try:
        server = _server_class(uvicorn)(uvicorn.Config(app, **options))
        server.run(sockets=[sock] if sock is not None else None)
    finally:
        store.close()
