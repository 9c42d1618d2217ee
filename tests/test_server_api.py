"""The team server's API against a real uvicorn server on each backend: lists with the
filter language and keyset paging (every item once while events arrive), node details,
id prefixes, lineage depth / max_nodes / frontier, compare, downsampled metric history,
POST /events (idempotent, dead letters, gzip), and the one JSON error shape."""

from __future__ import annotations

import gzip
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from metatrail.consumer.server import http_models as hm
from metatrail.schemas.events import (
    ArtifactRecorded,
    ArtifactRef,
    CodeVersion,
    ContextUpserted,
    Environment,
    Event,
    ExecutionCompleted,
    MetricPoint,
    MetricsLogged,
)
from metatrail.schemas.ids import new_id
from metatrail.schemas.parse import dump_event
from metatrail.schemas.values import typed
from tests.fixtures.server import LiveServer

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def post(api: httpx.Client, events: list[Event]) -> dict[str, Any]:
    body = "[" + ",".join(dump_event(e).decode() for e in events) + "]"
    response = api.post("/events", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


def artifacts(n: int, start: int = 0, **extra: Any) -> list[ArtifactRecorded]:
    return [ArtifactRecorded(artifact_id=new_id(), type="Model", uri=f"s3://m/{i}", name=f"m{i}",
                             properties=typed({"seed": i}), occurred_at=T0 + timedelta(seconds=i), **extra)
            for i in range(start, start + n)]


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    assert "Traceback" not in response.text
    return body["error"]  # type: ignore[no-any-return]


def test_pages_list_every_item_once_while_events_arrive(api: httpx.Client) -> None:
    first = artifacts(60)
    assert post(api, first)["applied"] == 60
    seen: list[str] = []
    token = None
    arriving = 1000
    pages = 0
    while True:
        params: dict[str, Any] = {"filter": "type = 'Model'", "order_by": "created_at", "page_size": 7}
        if token:
            params["page_token"] = token
        page = api.get("/artifacts", params=params).json()
        seen.extend(a["id"] for a in page["items"])
        pages += 1
        # new models arrive between pages, older and newer than the page boundary
        post(api, artifacts(2, start=arriving) + [artifacts(1, start=-arriving)[0]])
        arriving += 2
        token = page["next_page_token"]
        if not token:
            break
    assert pages >= 9
    assert len(seen) == len(set(seen)), "an item was listed twice"
    assert {str(a.artifact_id) for a in first} <= set(seen), "an item was skipped"
    counted = api.get("/artifacts", params={"filter": "type = 'Model'", "count": "true", "page_size": 1}).json()
    assert counted["total"] == 60 + 3 * pages


def test_filters_order_and_count(api: httpx.Client) -> None:
    post(api, artifacts(30))
    page = api.get("/artifacts", params={"filter": "properties.seed >= 10 AND properties.seed < 20",
                                         "order_by": "-properties.seed", "page_size": 5, "count": True}).json()
    assert [a["properties"]["seed"] for a in page["items"]] == [19, 18, 17, 16, 15]
    assert page["total"] == 10 and page["next_page_token"]
    nxt = api.get("/artifacts", params={"filter": "properties.seed >= 10 AND properties.seed < 20",
                                        "order_by": "-properties.seed", "page_size": 5,
                                        "page_token": page["next_page_token"]}).json()
    assert [a["properties"]["seed"] for a in nxt["items"]] == [14, 13, 12, 11, 10]
    assert nxt["next_page_token"] is None


def test_bad_filter_is_400_with_its_position(api: httpx.Client) -> None:
    err = error_of(api.get("/artifacts", params={"filter": "type = 'Model' AND properties.seed >"}), 400)
    assert err["code"] == "bad_request" and err["position"] == len("type = 'Model' AND properties.seed >")
    err = error_of(api.get("/executions", params={"filter": "nosuchfield = 1"}), 400)
    assert isinstance(err["position"], int) and "nosuchfield" in err["message"]
    post(api, artifacts(3))
    token = api.get("/artifacts", params={"page_size": 1}).json()["next_page_token"]
    err = error_of(api.get("/artifacts", params={"page_size": 1, "order_by": "name", "page_token": token}), 400)
    assert "another query" in err["message"]
    error_of(api.get("/artifacts", params={"page_token": "garbage!"}), 400)


def test_errors_are_always_json(api: httpx.Client, live_server: LiveServer) -> None:
    assert error_of(httpx.get(live_server.url + "/no/such/route"), 404)["code"] == "not_found"
    assert error_of(api.delete("/artifacts"), 405)["code"] == "method_not_allowed"
    err = error_of(api.get("/artifacts", params={"page_size": 5000}), 422)
    assert "page_size" in err["message"]
    error_of(api.get("/lineage"), 422)
    error_of(api.post("/tokens", content=b"{not json", headers={"Content-Type": "application/json"}), 422)


def pipeline(api: httpx.Client) -> dict[str, Any]:
    """raw -> train(lr) -> model -> evaluate -> report, in a run context."""
    run_id, raw, model, report = new_id(), new_id(), new_id(), new_id()
    train, evaluate = new_id(), new_id()
    events: list[Event] = [
        ContextUpserted(context_id=run_id, type="Run", name=f"run-{run_id}", properties=typed({"team": "ctr"})),
        ArtifactRecorded(artifact_id=raw, type="Dataset", uri="s3://raw", context_ids=[run_id]),
        ExecutionCompleted(execution_id=train, type="Trainer", name="train", context_ids=[run_id],
                           parameters=typed({"lr": 0.1, "epochs": 3}),
                           code_version=CodeVersion(source_hash="abc", git_commit="c1"),
                           environment=Environment(python="3.11", packages={"numpy": "2.0"}),
                           inputs=[ArtifactRef(artifact_id=raw, role="examples")],
                           outputs=[ArtifactRef(artifact_id=model, role="model")]),
        ArtifactRecorded(artifact_id=model, type="Model", uri="s3://model", context_ids=[run_id]),
        ExecutionCompleted(execution_id=evaluate, type="Evaluator", name="eval", context_ids=[run_id],
                           inputs=[ArtifactRef(artifact_id=model, role="model")],
                           outputs=[ArtifactRef(artifact_id=report, role="report")]),
        ArtifactRecorded(artifact_id=report, type="Report", uri="s3://report", context_ids=[run_id]),
        MetricsLogged(execution_id=train, points=[MetricPoint(key="loss", value=0.5, step=0, timestamp=T0)]),
    ]
    assert post(api, events)["applied"] == len(events)
    return {"run": str(run_id), "raw": str(raw), "model": str(model), "report": str(report),
            "train": str(train), "evaluate": str(evaluate)}


def test_node_details_and_prefix_ids(api: httpx.Client) -> None:
    ids = pipeline(api)
    model = api.get(f"/artifacts/{ids['model'][:-6]}").json()
    assert model["id"] == ids["model"] and model["type"] == "Model"
    assert [p["id"] for p in model["producers"]] == [ids["train"]]
    assert [(c["id"], c["role"]) for c in model["consumers"]] == [(ids["evaluate"], "model")]
    assert [c["id"] for c in model["contexts"]] == [ids["run"]]
    train = api.get(f"/executions/{ids['train']}").json()
    assert train["properties"] == {"lr": 0.1, "epochs": 3}
    assert [(i["id"], i["role"]) for i in train["inputs"]] == [(ids["raw"], "examples")]
    assert [o["id"] for o in train["outputs"]] == [ids["model"]] and train["counts"]["outputs"] == 1
    hm.ArtifactDetail.model_validate(model)
    hm.ExecutionDetail.model_validate(train)
    run = api.get(f"/contexts/{ids['run']}").json()
    hm.ContextDetail.model_validate(run)
    assert run["counts"]["executions"] == 2 and run["counts"]["artifacts"] == 3
    error_of(api.get(f"/contexts/{ids['model']}"), 404)  # an artifact, not a context
    # UUIDv7 ids made in the same millisecond share their first characters: ambiguous
    both = artifacts(2)
    post(api, both)
    a, b = str(both[0].artifact_id), str(both[1].artifact_id)
    common = next(i for i in range(36) if a[i] != b[i])
    assert common >= 4
    err = error_of(api.get(f"/artifacts/{a[:common]}"), 409)
    assert err["code"] == "ambiguous_id" and {a, b} <= {c["id"] for c in err["candidates"]}


def test_lineage_depth_max_nodes_and_frontier(api: httpx.Client) -> None:
    # a chain d0 -> x0 -> d1 -> x1 -> d2 -> x2 -> d3, and d0 read by 6 more executions
    data = [new_id() for _ in range(4)]
    execs = [new_id() for _ in range(3)]
    fans = [new_id() for _ in range(6)]
    events: list[Event] = [ArtifactRecorded(artifact_id=d, type="Dataset", uri=f"s3://d{i}") for i, d in enumerate(data)]
    for i, x in enumerate(execs):
        events.append(ExecutionCompleted(execution_id=x, type="Step", inputs=[ArtifactRef(artifact_id=data[i])],
                                         outputs=[ArtifactRef(artifact_id=data[i + 1])]))
    events += [ExecutionCompleted(execution_id=f, type="Reader", inputs=[ArtifactRef(artifact_id=data[0])]) for f in fans]
    post(api, events)
    full = api.get("/lineage", params={"node": str(data[3]), "direction": "up", "depth": 10}).json()
    hm.LineageOut.model_validate(full)
    assert len(full["nodes"]) == 7 and not full["truncated"]
    assert len(full["edges"]) == 6
    near = api.get("/lineage", params={"node": str(data[3])[:-6], "direction": "up", "depth": 2}).json()
    assert {n["id"] for n in near["nodes"]} == {str(data[3]), str(execs[2]), str(data[2])}
    assert near["truncated"] and near["start"] == str(data[3])
    frontier = {f["id"]: f for f in near["frontier"]}
    assert frontier[str(data[2])]["hidden_upstream"] == 1  # x1 made it
    down = api.get("/lineage", params={"node": str(data[0]), "direction": "down", "depth": 1, "max_nodes": 4}).json()
    assert len(down["nodes"]) == 4 and down["truncated"]
    hidden = {f["id"]: f for f in down["frontier"]}[str(data[0])]["hidden_downstream"]
    assert hidden == 7 - 3  # 7 readers, 3 of them answered
    both = api.get("/lineage", params={"node": str(execs[1]), "direction": "both", "depth": 1}).json()
    assert {n["id"] for n in both["nodes"]} == {str(execs[1]), str(data[1]), str(data[2])}
    error_of(api.get("/lineage", params={"node": "ffffffff-0000"}), 404)


def test_compare_says_which_rows_differ(api: httpx.Client) -> None:
    runs = []
    for lr in (0.1, 0.2):
        run_id, ex = new_id(), new_id()
        post(api, [
            ContextUpserted(context_id=run_id, type="Run", name=f"run-{lr}"),
            ExecutionCompleted(execution_id=ex, type="Trainer", context_ids=[run_id],
                               parameters=typed({"lr": lr, "epochs": 5}),
                               code_version=CodeVersion(source_hash="same", git_commit=f"c{lr}"),
                               environment=Environment(python="3.11")),
            MetricsLogged(execution_id=ex, points=[MetricPoint(key="auc", value=lr * 4, step=0, timestamp=T0)]),
        ])
        runs.append(str(run_id))
    body = api.get("/compare", params={"runs": f"{runs[0][:-6]},{runs[1]}"}).json()
    hm.CompareOut.model_validate(body)  # the body is what the OpenAPI document says
    assert [c["id"] for c in body["columns"]] == runs
    rows = {(r["section"], r["key"]): r for r in body["rows"]}
    assert rows[("params", "Trainer.lr")]["values"] == [0.1, 0.2] and rows[("params", "Trainer.lr")]["differs"]
    assert not rows[("params", "Trainer.epochs")]["differs"]
    assert rows[("metrics", "Trainer.auc")]["differs"]
    assert not rows[("code", "Trainer.source_hash")]["differs"] and rows[("code", "Trainer.git_commit")]["differs"]
    assert not rows[("environment", "Trainer.python")]["differs"]
    error_of(api.get("/compare", params={"runs": str(uuid.uuid4())}), 404)


def test_downsampled_history_keeps_the_extremes(api: httpx.Client) -> None:
    rng = random.Random(5)
    ex = new_id()
    n = 5000
    values = [1.0 + rng.random() * 0.1 for _ in range(n)]
    spike, dip = rng.randrange(n), rng.randrange(n)
    values[spike], values[dip] = 50.0, -50.0
    points = [MetricPoint(key="loss", value=v, step=i, timestamp=T0) for i, v in enumerate(values)]
    events: list[Event] = [ExecutionCompleted(execution_id=ex, type="Trainer")]
    events += [MetricsLogged(execution_id=ex, points=points[i:i + 1000]) for i in range(0, n, 1000)]
    post(api, events)
    body = api.get("/metrics/history", params={"key": "loss", "execution": str(ex), "max_points": 100}).json()
    hm.MetricHistoryOut.model_validate(body)
    (series,) = body["series"]
    assert series["total"] == n and series["downsampled"]
    assert len(series["points"]) <= 100
    steps = [p["step"] for p in series["points"]]
    assert steps == sorted(steps)
    by_step = {p["step"]: p["value"] for p in series["points"]}
    assert by_step[spike] == 50.0 and by_step[dip] == -50.0
    full = api.get("/metrics/history", params={"key": "loss", "execution": str(ex), "max_points": 10_000}).json()
    assert len(full["series"][0]["points"]) == n and not full["series"][0]["downsampled"]
    error_of(api.get("/metrics/history", params={"key": "loss"}), 400)


def test_post_events_is_idempotent_and_dead_letters_bad_ones(api: httpx.Client) -> None:
    good = artifacts(5)
    lines = [dump_event(e) for e in good] + [b'{"kind": "artifact.recorded"}', b"not json"]
    body = gzip.compress(b"\n".join(lines))
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    first = api.post("/events", content=body, headers=headers).json()
    assert (first["applied"], first["duplicates"], first["dead_lettered"]) == (5, 0, 2)
    assert [d["index"] for d in first["dead_letters"]] == [5, 6]
    again = api.post("/events", content=body, headers=headers).json()
    assert (again["applied"], again["duplicates"], again["dead_lettered"]) == (0, 5, 2)
    letters = api.get("/dead-letters").json()["items"]
    assert len(letters) == 2, "the same bad bytes posted twice are one dead letter"
    assert all(d["source_key"].startswith("http:sha256:") for d in letters)
    replay = api.post("/dead-letters/replay", json={"ids": [letters[0]["id"]]}).json()
    assert replay["outcomes"][0]["result"].startswith("still invalid")
    error_of(api.post("/events", content=b"[1, 2", headers={"Content-Type": "application/json"}), 400)
    error_of(api.post("/events", content=b"abc", headers={"Content-Encoding": "gzip"}), 400)
    error_of(api.post("/events", content=b"abc", headers={"Content-Encoding": "br"}), 415)


def test_post_events_refuses_a_body_over_the_limit(store_url: str) -> None:
    from metatrail.schemas.settings import load_settings

    server = LiveServer(store_url, load_settings(store_url=store_url, server_max_request_bytes=10_000)).start()
    try:
        with server.client() as api:
            lines = b"\n".join(dump_event(e) for e in artifacts(100))
            error_of(api.post("/events", content=lines), 413)
            error_of(api.post("/events", content=gzip.compress(lines), headers={"Content-Encoding": "gzip"}), 413)
            assert api.post("/events", content=b"\n".join(dump_event(e) for e in artifacts(3))).json()["applied"] == 3
    finally:
        server.stop()


def test_latest_retire_status_and_probes(api: httpx.Client) -> None:
    ids = pipeline(api)
    latest = api.get("/artifacts/latest", params={"type": "Model"}).json()["artifact"]
    assert latest["id"] == ids["model"]
    assert api.get("/artifacts/latest", params={"type": "Nothing"}).json() == {"artifact": None}
    retired = api.post(f"/artifacts/{ids['model']}/retire", json={"state": "DELETED", "reason": "bad"}).json()
    assert retired["state"] == "DELETED" and retired["result"]["applied"] == 1
    assert api.get("/artifacts/latest", params={"type": "Model"}).json() == {"artifact": None}
    status = api.get("/status").json()
    assert status["schema_revision"] == status["schema_head"] and status["kafka"] is None
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ok"}
