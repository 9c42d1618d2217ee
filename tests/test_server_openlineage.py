"""OpenLineage clients pointed at ``metatrail serve``: the real ``openlineage-python``
client (its HTTP transport, gzip, an api_key that is a metatrail write token) posts to
``/api/v1/lineage`` and the graph answers over the API; ``/lineage/batch`` applies the
valid events of a batch and reports the invalid ones by position; bad input gets a 400
that names what is wrong and is kept as a dead letter. On SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import gzip
import json
import random
import uuid
from datetime import datetime, timezone

import httpx
import orjson
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.transport.http import HttpConfig, HttpTransport

from metatrail.consumer.openlineage import naming
from metatrail.consumer.openlineage.parsed import ParsedJson
from metatrail.consumer.server.events import decode_body
from metatrail.consumer.server.tokens import create_token
from metatrail.consumer.store.engine import open_engine
from tests.fixtures.openlineage import requires_shared, scenario_payloads
from tests.fixtures.server import LiveServer

PRODUCER = "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python"


def write_token(store_url: str, scope: str = "write") -> str:
    engine = open_engine(store_url)
    try:
        return create_token(engine, scope, "openlineage-client")[0]
    finally:
        engine.dispose()


def client_event(state: RunState, run_id: str, when: int) -> RunEvent:
    """An event as a job instrumented with the OpenLineage client builds it."""
    return RunEvent(
        eventType=state,
        eventTime=datetime(2024, 5, 1, 10, 0, when, tzinfo=timezone.utc).isoformat(),
        run=Run(runId=run_id),
        job=Job(namespace="etl", name="features.build"),
        producer=PRODUCER,
        inputs=[InputDataset(namespace="s3://raw", name="clicks/2024-05-01")],
        outputs=[OutputDataset(namespace="postgres://warehouse:5432", name="features.daily")],
    )


def test_the_client_configured_by_environment_only_records_a_run(
    live_server: LiveServer, store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = write_token(store_url)
    monkeypatch.setenv("OPENLINEAGE_URL", live_server.url)  # the client adds /api/v1/lineage
    monkeypatch.setenv("OPENLINEAGE_API_KEY", token)
    client = OpenLineageClient()
    run_id = str(uuid.uuid4())
    client.emit(client_event(RunState.COMPLETE, run_id, 9))  # COMPLETE first: arrival order does not matter
    client.emit(client_event(RunState.START, run_id, 1))

    with live_server.client(token) as api:
        execution = api.get(f"/executions/{naming.execution_id(run_id)}").json()
        assert execution["state"] == "COMPLETE"
        assert execution["custom_properties"]["ol_run_id"] == run_id
        output = naming.dataset_id("postgres://warehouse:5432", "features.daily")
        graph = api.get("/lineage", params={"node": str(output), "direction": "up", "depth": 4}).json()
    names = {node["name"] for node in graph["nodes"]}
    assert {"features.build", "clicks/2024-05-01"} <= names, names


@requires_shared
def test_airflow_events_through_the_http_transport_with_gzip_give_the_lineage(
    live_server: LiveServer, store_url: str
) -> None:
    token = write_token(store_url)
    config = HttpConfig.from_dict({"url": live_server.url, "compression": "gzip",
                                   "auth": {"type": "api_key", "apiKey": token}})
    transport = HttpTransport(config)
    events = [json.loads(p) for p in scenario_payloads("airflow")]
    random.Random(11).shuffle(events)
    try:
        for event in events + events[:5]:  # the last five are a client's retries
            transport.emit(event)  # raises on any status but 2xx
    finally:
        transport.close()

    result = naming.dataset_id("gs://mock-bucket", "result.csv")
    with live_server.client(token) as api:
        graph = api.get("/lineage", params={"node": str(result), "direction": "up", "depth": 10}).json()
        runs = api.get("/executions", params={"filter": "custom_properties.ol_job_namespace IS NOT NULL", "count": True}).json()
    depths = {node["id"]: node.get("depth") for node in graph["nodes"]}
    for namespace, name in (("bigquery", "mock-project.test.upload_cp"), ("bigquery", "mock-project.test.upload"),
                            ("gs://mock-bucket", "copied.csv")):
        assert str(naming.dataset_id(namespace, name)) in depths, (namespace, name)
    run_ids = {json.loads(p)["run"]["runId"] for p in scenario_payloads("airflow")}
    assert runs["total"] >= len(run_ids) - 1  # every task run (the DAG run may be a parent context only)


def test_batch_applies_the_valid_events_and_names_the_invalid_by_position(live_server: LiveServer) -> None:
    good = [client_json(str(uuid.uuid4())) for _ in range(3)]
    no_run_id = json.loads(good[0])
    del no_run_id["run"]["runId"]
    body = [json.loads(good[0]), no_run_id, json.loads(good[1]), "not an event", json.loads(good[2])]
    with live_server.client() as api:
        answer = api.post("/lineage/batch", json=body)
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert (report["accepted"], report["rejected"]) == (3, 2)
        assert [e["index"] for e in report["errors"]] == [1, 3]
        assert "runId" in report["errors"][0]["reason"]

        # the same events as gzip'd NDJSON, wrapped: all three are duplicates now
        ndjson = gzip.compress(b"\n".join(good))
        again = api.post("/lineage/batch", content=ndjson,
                         headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}).json()
        assert (again["accepted"], again["applied"]) == (3, 0) and again["duplicates"] > 0
        wrapped = api.post("/lineage/batch", json={"events": [json.loads(g) for g in good]}).json()
        assert (wrapped["accepted"], wrapped["applied"]) == (3, 0)

        # a NaN (which orjson, the fast path, refuses) fails its own event, not the batch
        nan = client_json(str(uuid.uuid4())).replace(b'"eventType"', b'"x": NaN, "eventType"', 1)
        mixed = api.post("/lineage/batch", content=b"[" + nan + b"," + good[0] + b"]",
                         headers={"Content-Type": "application/json"}).json()
        assert (mixed["accepted"], mixed["rejected"], mixed["errors"][0]["index"]) == (1, 1, 0)
        assert "JSON" in mixed["errors"][0]["reason"]

        letters = api.get("/dead-letters").json()["items"]
        assert len(letters) == 3  # the three invalid events, kept with their reasons
        assert any("runId" in letter["reason"] for letter in letters)


def test_a_batch_body_splits_into_events_that_carry_what_its_parse_made() -> None:
    one = {"eventType": "START", "run": {"runId": "r-1"}, "job": {"namespace": "n", "name": "j"}}
    body = orjson.dumps([one, "not an event"])
    items = decode_body(body, None, "application/json", 1 << 20, keep_values=True)
    assert [type(i) for i in items] == [ParsedJson, ParsedJson]
    assert (items[0].value, bytes(items[0])) == (one, orjson.dumps(one, option=orjson.OPT_SORT_KEYS))
    assert type(decode_body(body, None, "application/json", 1 << 20)[0]) is bytes  # POST /events: bytes only
    # a body orjson refuses (NaN) is split by the standard library: its items carry no value,
    # so the mapping parses them and refuses the NaN event alone
    mixed = decode_body(b'[{"x": NaN}, ' + orjson.dumps(one) + b"]", None, "application/json", 1 << 20,
                        keep_values=True)
    assert len(mixed) == 2 and not any(isinstance(i, ParsedJson) for i in mixed)
    lines = decode_body(orjson.dumps(one) + b"\n" + orjson.dumps(one), None, "application/x-ndjson", 1 << 20,
                        keep_values=True)  # NDJSON lines go on as sent
    assert lines == [orjson.dumps(one)] * 2 and not isinstance(lines[0], ParsedJson)


def client_json(run_id: str) -> bytes:
    from openlineage.client.serde import Serde

    return Serde.to_json(client_event(RunState.COMPLETE, run_id, 5)).encode()


@pytest.mark.parametrize(("body", "what"), [
    (b"{not json", "JSON"),
    (json.dumps({"eventType": "START", "job": {"namespace": "n", "name": "j"}}).encode(), "run"),
    (json.dumps({"eventType": "START", "run": {"runId": str(uuid.uuid4())}}).encode(), "job"),
])
def test_bad_input_is_a_400_naming_the_fault_and_a_dead_letter(live_server: LiveServer, body: bytes, what: str) -> None:
    with live_server.client() as api:
        answer = api.post("/lineage", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == 400, answer.text
        error = answer.json()["error"]
        assert error["code"] == "bad_event" and what in error["message"], error
        assert api.get("/dead-letters").json()["items"], "the refused event was not kept"


def test_a_read_token_cannot_post_lineage(live_server: LiveServer, store_url: str) -> None:
    read = write_token(store_url, "read")
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {read}"}) as http:
        answer = http.post("/api/v1/lineage", content=client_json(str(uuid.uuid4())))
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"
