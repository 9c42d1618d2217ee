"""``GET /api/v1/diff`` and ``/api/v1/impact`` against a real uvicorn server on each
backend: the same JSON as ``metatrail diff --json`` / ``impact --json``, id prefixes, and
the one JSON error shape for unknown, ambiguous and mismatched ids."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import Engine

from metatrail.consumer.cli import main
from metatrail.consumer.server import http_models as hm
from tests.fixtures.pipelines import Runs, ctr_run
from tests.test_server_api import artifacts, error_of, post

UNKNOWN = "00000000-0000-0000-0000-000000000000"


def two_days(engine: Engine) -> tuple[dict[str, str], dict[str, str]]:
    """Day 2 shares day 1's data and trains with another learning rate; each day's model is
    pushed (day 2's not deployed), and the pusher is a registered step."""
    r = Runs()
    a = ctr_run(r, "day-1")
    b = ctr_run(r, "day-2", raw=a["raw"], examplegen=a["examplegen"], examples=a["examples"],
                trainer={"params": {"learning_rate": 0.1, "epochs": 5}},
                aucs={"auc": 0.78, "auc/a": 0.70, "auc/b": 0.80})
    for day, ids, pushed in (("day-1", a, True), ("day-2", b, False)):
        ids["pushed"] = r.artifact(f"{day}:pushed", "PushedModel", pushed=pushed)
        ids["pusher"] = r.step(f"{day}:pusher", "Pusher", inputs={"model": ids["model"]},
                               outputs={"pushed": ids["pushed"]})
    r.register("trainer", {"examples": "Examples"}, ["Model"])
    r.register("pusher", {"model": "Model"}, ["PushedModel"])
    r.apply(engine)
    return a, b


def test_diff_over_http_is_the_cli_json(engine: Engine, store_url: str, api: httpx.Client,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_days(engine)
    response = api.get("/diff", params={"a": a["model"][:-8], "b": b["model"]})
    assert response.status_code == 200, response.text
    body = response.json()
    hm.DiffOut.model_validate(body)  # the body is what the OpenAPI document says
    assert body["a"]["id"] == a["model"] and body["b"]["id"] == b["model"] and body["aligned"]
    assert body["verdict"]["text"] == "first difference: Trainer ran with learning_rate=0.1 instead of 0.01"
    trainer = next(s for s in body["steps"] if s["type"] == "Trainer")
    assert trainer["status"] == "changed"
    assert [(c["key"], c["a"], c["b"]) for c in trainer["parameters"]] == [("learning_rate", 0.01, 0.1)]
    auc = next(m for m in body["metrics"] if m["metric"] == "auc")
    assert auc["slices"][0]["slice"] == "a" and auc["slices"][0]["delta"] == pytest.approx(-0.11)

    assert main(["diff", a["model"], b["model"], "--url", store_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == body

    # runs (executions here) diff too; depth bounds the walk
    steps = api.get("/diff", params={"a": a["trainer"], "b": b["trainer"], "depth": 0}).json()
    assert steps["a"]["kind"] == "execution" and steps["truncated"]


def test_diff_errors_are_json(engine: Engine, api: httpx.Client) -> None:
    a, b = two_days(engine)
    assert error_of(api.get("/diff", params={"a": a["model"], "b": UNKNOWN}), 404)["code"] == "not_found"
    assert error_of(api.get("/diff", params={"a": "nothex", "b": b["model"]}), 404)["code"] == "not_found"
    err = error_of(api.get("/diff", params={"a": a["model"], "b": a["trainer"]}), 400)
    assert "an artifact" in err["message"] and "an execution" in err["message"]
    error_of(api.get("/diff", params={"a": a["model"]}), 422)
    error_of(api.get("/diff", params={"a": a["model"], "b": b["model"], "depth": -1}), 422)
    err = error_of(api.get("/impact", params={"artifact": UNKNOWN}), 404)
    assert err["code"] == "not_found"
    error_of(api.get("/impact", params={"artifact": a["trainer"]}), 404)  # an execution, not an artifact


def test_ambiguous_prefix_is_409_with_candidates(engine: Engine, api: httpx.Client) -> None:
    a, _ = two_days(engine)
    both = artifacts(2)  # UUIDv7 ids made in the same millisecond share their first characters
    post(api, both)
    x, y = str(both[0].artifact_id), str(both[1].artifact_id)
    common = next(i for i in range(36) if x[i] != y[i])
    for params in ({"a": x[:common], "b": a["model"]}, {"a": a["model"], "b": x[:common]}):
        err = error_of(api.get("/diff", params=params), 409)
        assert err["code"] == "ambiguous_id" and {x, y} <= {c["id"] for c in err["candidates"]}
    assert error_of(api.get("/impact", params={"artifact": x[:common]}), 409)["code"] == "ambiguous_id"


def test_impact_over_http_is_the_cli_json(engine: Engine, store_url: str, api: httpx.Client,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    a, b = two_days(engine)
    response = api.get("/impact", params={"artifact": a["examples"][:-6]})
    assert response.status_code == 200, response.text
    body = response.json()
    hm.ImpactOut.model_validate(body)
    assert body["source"]["id"] == a["examples"]
    assert [(g["type"], g["rank"]) for g in body["groups"]][:2] == [("PushedModel", "deployed"), ("Model", "model")]
    models = body["groups"][1]["artifacts"]
    assert {m["artifact"]["id"] for m in models} == {a["model"], b["model"]}
    assert {m["made_by"] for m in models} == {"Trainer"}
    assert {p["artifact"]["id"]: p["deployed"] for p in body["groups"][0]["artifacts"]} == {
        a["pushed"]: True, b["pushed"]: False}
    assert [s["name"] for s in body["steps"]] == ["trainer", "pusher"]
    assert body["counts"]["models"] == 2 and body["counts"]["deployed"] == 1

    assert main(["impact", a["examples"], "--url", store_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == body
