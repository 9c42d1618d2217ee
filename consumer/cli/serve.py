"""``metatrail serve``: the team server (HTTP API; the web UI mounts on it)."""

from __future__ import annotations

import logging

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.service.gcpolicy import tune_for_batches
from metatrail.schemas.settings import load_settings


@app.command("serve")
def serve(
    host: str | None = typer.Option(None, "--host", help="Address to listen on (default METATRAIL_SERVER_HOST, 127.0.0.1)."),
    port: int | None = typer.Option(None, "--port", min=0, max=65535, help="Port (default METATRAIL_SERVER_PORT, 8181)."),
    store: str | None = typer.Option(None, "--store", help="Store URL (default METATRAIL_STORE_URL)."),
    insecure: bool = typer.Option(False, "--insecure", help="Serve a non-loopback address with no token in the store (unauthenticated!)."),
    workers: int | None = typer.Option(None, "--workers", min=1, max=64,
                                       help="Worker processes sharing the port (default METATRAIL_SERVER_WORKERS, 1)."),
) -> None:
    """Serve the HTTP API (/api/v1, docs at /api/docs) on the store until SIGTERM.

    With no token in the store the server answers without authentication and so listens
    only on a loopback address; a non-loopback --host needs a token first (metatrail token
    create) or --insecure. SIGTERM lets requests in flight finish. --workers N answers
    with N processes (on PostgreSQL or MariaDB, one per core lets ingest use every core).
    """
    from metatrail.consumer.server.runner import serve as run_server

    settings = load_settings() if workers is None else load_settings(server_workers=workers)
    logging.getLogger("metatrail").setLevel(logging.INFO)
    host = host or settings.server_host
    port = settings.server_port if port is None else port
    url = store or settings.store_url
    tune_for_batches()
    run_server(settings, host=host, port=port, store_url=url, insecure=insecure)
