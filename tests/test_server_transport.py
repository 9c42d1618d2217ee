"""Producers that talk to the team server only (METATRAIL_TRANSPORT=http): events posted
from the spool survive the server going away mid-run (every event applied exactly once),
cache lookups and warm start go through the API, and a batch the server refuses as a
whole is split until the refused event is set aside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

import metatrail
from metatrail import Model, log_metric, latest, run, track
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import AppliedEventRow, ExecutionRow, MetricRow
from metatrail.producer import emitter
from metatrail.producer.httpapi import ApiClient
from metatrail.producer.transports.base import RejectedEventsError, SpooledEvent
from metatrail.producer.transports.http import HttpTransport
from metatrail.schemas.events import ArtifactRecorded
from metatrail.schemas.ids import new_id
from metatrail.schemas.parse import dump_event
from metatrail.schemas.settings import load_settings
from tests.fixtures.server import LiveServer


def counts(url: str) -> tuple[int, int, int]:
    engine = open_engine(url)
    try:
        with session_scope(engine, write=False) as s:
            return tuple(int(s.scalar(select(func.count()).select_from(m)) or 0)  # type: ignore[return-value]
                         for m in (AppliedEventRow, ExecutionRow, MetricRow))
    finally:
        engine.dispose()


@pytest.fixture
def http_producer(store_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(store_url).start()
    metatrail.configure(transport="http", http_url=server.url, spool_path=tmp_path / "spool.db",
                        relay_interval_ms=20, strict=True, store_url="sqlite:///nowhere/never.db")
    yield server
    emitter.shutdown(5)
    server.stop()


@track(type="Step")
def step(i: int) -> None:
    log_metric("i", float(i), step=i)


def test_every_event_once_though_the_server_restarts_mid_run(http_producer: LiveServer, store_url: str) -> None:
    server = http_producer
    with run("restarts"):
        for i in range(40):
            step(i)
        assert metatrail.flush(30)
        server.stop()  # the server goes away mid-run: events wait in the spool
        for i in range(40, 100):
            step(i)
        assert not metatrail.flush(1.0)
        server.start()  # same port
        for i in range(100, 120):
            step(i)
    assert metatrail.flush(60), "events were not delivered after the server came back"
    applied, executions, metrics = counts(store_url)
    assert executions == 120 and metrics == 120
    # per call: started, completed, metrics; plus the run's context event(s)
    assert applied >= 3 * 120
    with server.client() as api:
        page = api.get("/executions", params={"filter": "type = 'Step'", "count": True, "page_size": 1}).json()
    assert page["total"] == 120


@track(type="Trainer", cache=True)
def train(lr: float) -> Model:
    path = Path("model.txt")
    path.write_text(f"weights {lr}")
    return Model(str(path.resolve()), name="m")


def test_cache_and_warm_start_go_through_the_server(http_producer: LiveServer, store_url: str) -> None:
    with run("cached", pipeline="ctr"):
        first = train(0.1)
        second = train(0.1)  # served by the server's cache lookup
        assert second.id == first.id
        base = latest("Model", pipeline="ctr")
    assert base is not None and base.id == first.id
    assert metatrail.flush(30)
    with http_producer.client() as api:
        states = [e["state"] for e in api.get("/executions", params={"filter": "type = 'Trainer'"}).json()["items"]]
    assert sorted(states) == ["CACHED", "COMPLETE"]
    Path("model.txt").unlink()  # the local file is gone: the server's candidate is not reusable here
    with run("cached-again", pipeline="ctr"):
        train(0.1)  # runs again (and writes the file back)
    assert metatrail.flush(30)
    with http_producer.client() as api:
        states = [e["state"] for e in api.get("/executions", params={"filter": "type = 'Trainer'"}).json()["items"]]
    assert sorted(states) == ["CACHED", "COMPLETE", "COMPLETE"]


def test_a_refused_event_is_set_aside_and_the_rest_delivered(store_url: str, tmp_path: Path) -> None:
    server = LiveServer(store_url, load_settings(store_url=store_url, server_max_request_bytes=20_000)).start()
    try:
        settings = load_settings(transport="http", http_url=server.url, spool_path=tmp_path / "spool.db")
        transport = HttpTransport(settings)
        events = [ArtifactRecorded(artifact_id=new_id(), type="Data", uri=f"s3://{i}") for i in range(20)]
        huge = ArtifactRecorded(artifact_id=new_id(), type="Data", uri="s3://huge", name="x" * 200,
                                properties={})
        payloads = [dump_event(e) for e in events]
        big = dump_event(huge).replace(b'"name":"' + b"x" * 200, b'"name":"' + b"x" * 30_000)
        batch = [SpooledEvent(i, str(e.artifact_id), "k", p) for i, (e, p) in enumerate(zip(events, payloads))]
        batch.insert(7, SpooledEvent(99, str(huge.event_id), "k", big))
        with pytest.raises(RejectedEventsError) as refused:
            transport.send(batch)  # the relay sets the refused ones aside (spool.deadletters.jsonl)
        applied, _, _ = counts(store_url)
        assert applied == 20
        assert [(e.event_id, "413" in reason) for e, reason in refused.value.rejected] == [(str(huge.event_id), True)]
    finally:
        server.stop()


def test_auth_and_url_errors_are_not_retriable(tmp_path: Path, sqlite_url: str) -> None:
    from metatrail.consumer.server.tokens import create_token
    from metatrail.schemas.errors import TransientTransportError, TransportError

    engine = open_engine(sqlite_url)
    create_token(engine, "read")
    engine.dispose()
    server = LiveServer(sqlite_url).start()
    try:
        client = ApiClient(server.url, None, timeout_s=5)
        with pytest.raises(TransportError) as refused:
            client.post_events([b"{}"])
        assert not refused.value.retriable and "401" in str(refused.value)
    finally:
        server.stop()
    with pytest.raises(TransientTransportError):
        ApiClient(server.url, None, timeout_s=2).get("/healthz")
