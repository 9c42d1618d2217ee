"""``/status`` (read) and the orchestrators' probes ``/healthz`` and ``/readyz`` (open)."""

from __future__ import annotations

from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import APIRouter, Depends
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.dependencies import ServerState, State, require
from metatrail.consumer.server.responses import JSONBody, json_body
from metatrail.consumer.service.status import group_status, store_status
from metatrail.consumer.store.migrate import current_revision, head_revision
from metatrail.schemas.errors import MetatrailError

router = APIRouter()
_UNAVAILABLE = {503: {"model": hm.Health}}


def package_version() -> str:
    try:
        return version("metatrail")
    except PackageNotFoundError:  # a source tree that is not installed
        return "unknown"


def _iso(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in data.items()}


def _collect(state: ServerState) -> dict[str, Any]:
    store = store_status(state.engine)
    try:
        revision: str | None = current_revision(state.engine)
    except Exception as exc:  # noqa: BLE001 - reported, not raised: status shows what is wrong
        revision = None
        store.error = store.error or f"cannot read the schema revision: {type(exc).__name__}"
    kafka = None
    if state.settings.kafka_bootstrap:
        group = group_status(state.settings)
        kafka = {**asdict(group), "partitions": [asdict(p) for p in group.partitions]}
    url = state.engine.url
    return {
        "version": package_version(),
        "store": {"dialect": state.engine.dialect.name, "url": url.render_as_string(hide_password=True),
                  "last_event_id": store.last_event_id, "last_event_kind": store.last_event_kind,
                  "last_applied_at": store.last_applied_at.isoformat() if store.last_applied_at else None,
                  "error": store.error},
        "schema_revision": revision,
        "schema_head": head_revision(),
        "kafka": _iso(kafka) if kafka else None,
        "dead_letters": store.dead_letters,
        "dead_letters_pending": store.dead_letters_pending,
        "auth": "tokens or open on a loopback address" if state.open_without_tokens else "tokens",
    }


@router.get("/status", response_model=hm.StatusOut, summary="Store, schema, consumer lag, dead letters",
            dependencies=[Depends(require("read"))])
async def status(state: State) -> JSONBody:
    """What a team checks first: the store and its schema revision, the consumer group's
    lag when a broker is configured, the last applied event and the dead letters. Parts
    that cannot be reached say why."""
    return json_body(await run_in_threadpool(_collect, state))


@router.get("/healthz", response_model=hm.Health, summary="Liveness")
async def healthz() -> JSONBody:
    """The process answers (no store access)."""
    return json_body({"status": "ok"})


def _ready(state: ServerState) -> dict[str, Any]:
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        revision = current_revision(state.engine)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", said in one line
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return {"status": "unavailable", "reason": f"store unreachable: {message[0][:300] if message else type(exc).__name__}"}
    head = head_revision()
    if revision != head:
        return {"status": "unavailable", "reason": f"store schema is at {revision}, not {head}: run metatrail db upgrade"}
    return {"status": "ok"}


@router.get("/readyz", response_model=hm.Health, responses=_UNAVAILABLE, summary="Readiness")
async def readyz(state: State) -> JSONBody:
    """Ready when the store answers and its schema is current; 503 otherwise."""
    try:
        body = await run_in_threadpool(_ready, state)
    except MetatrailError as exc:
        body = {"status": "unavailable", "reason": str(exc)}
    return json_body(body, status_code=200 if body["status"] == "ok" else 503)
