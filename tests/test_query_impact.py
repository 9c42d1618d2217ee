"""``Store.impact`` and ``metatrail impact``: the blast radius of a bad dataset, on every
backend, and retiring it through events."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine

from metatrail import Store
from metatrail.consumer.apply import apply_events
from metatrail.consumer.cli import main
from metatrail.consumer.query.impact import retire_events, retire_plan
from tests.fixtures.pipelines import Runs, ctr_run


def _two_days(engine: Engine) -> tuple[dict[str, str], dict[str, str]]:
    r = Runs()
    days = []
    for day, pushed in ((1, True), (2, False)):
        ids = ctr_run(r, f"day-{day}")
        ids["pushed"] = r.artifact(f"day-{day}:pushed", "PushedModel", pushed=pushed,
                                   reason="better" if pushed else "AUC of slice a fell")
        ids["pusher"] = r.step(f"day-{day}:pusher", "Pusher", inputs={"model": ids["model"]},
                               outputs={"pushed": ids["pushed"]})
        days.append(ids)
    r.register("examplegen", {"raw": "Dataset"}, ["Examples"])
    r.register("trainer", {"examples": "Examples"}, ["Model"])
    r.register("pusher", {"model": "Model"}, ["PushedModel"])
    r.register("audit", {"model": "Model"}, [], pipeline=None)  # of no pipeline: any data
    fraud = Runs("fraud")
    fraud.register("fraud_gen", {"raw": "Dataset"}, ["Examples"])
    r.events += fraud.events
    r.apply(engine)
    return days[0], days[1]


def test_impact_lists_what_the_bad_data_touched(engine: Engine) -> None:
    day1, day2 = _two_days(engine)
    found = Store(engine).impact(day2["raw"])

    assert found.source.id == day2["raw"] and found.pipelines == ("ctr",)
    assert [g.type for g in found.groups][:2] == ["PushedModel", "Model"]
    assert [g.rank for g in found.groups][:2] == ["deployed", "model"]
    pushed = found.groups[0].artifacts[0]
    assert pushed.artifact.id == day2["pushed"] and pushed.deployed is False and pushed.made_by == "Pusher"
    ids = {a.id for a in found.artifacts()}
    assert {day2["model"], day2["examples"], day2["stats"], day2["evaluation"], day2["pushed"]} == ids
    assert not ids & {day1["model"], day1["pushed"], day1["examples"]}
    assert {x.id for x in found.executions} == {day2[k] for k in ("examplegen", "statisticsgen", "trainer",
                                                                  "evaluator", "pusher")}
    assert found.counts == {"artifacts": 5, "executions": 5, "deployed": 0, "models": 1, "live": 5, "steps": 4}
    # Fixed data would start the steps of this pipeline (and of none) that take these types.
    assert [(s.name, s.hops) for s in found.steps] == [("examplegen", 0), ("trainer", 2), ("audit", 4),
                                                       ("pusher", 4)]
    assert found.steps[0].slots == {"raw": "Dataset"} and found.steps[0].filters == {"raw": None}
    json.dumps(found.to_json())


def test_retire_through_events(engine: Engine) -> None:
    day1, day2 = _two_days(engine)
    store = Store(engine)
    found = store.impact(day2["raw"][:8])
    plan = retire_plan(found, "ABANDONED")
    assert [c.id for c in plan] == [day2["raw"]] + [a.id for a in found.artifacts()]
    assert {(c.state_from, c.state_to) for c in plan} == {("LIVE", "ABANDONED")}
    events = retire_events(found, plan, reason="labels were shuffled", requested_by="alice@laptop")
    assert apply_events(engine, events).applied == len(plan)

    model = store.artifact(day2["model"])
    assert model.state == "ABANDONED" and model.state_reason == "labels were shuffled"
    assert model.custom_properties == {"retired_by": "alice@laptop", "retired_because_of": day2["raw"]}
    # Retired artifacts leave queries and warm start; day 1 stays.
    assert [a.id for a in store.artifacts("type = 'Model'").items] == [day1["model"]]
    assert store.latest("Model") is not None and store.latest("Model").id == day1["model"]  # type: ignore[union-attr]
    # Nothing is left to retire; the same events again change nothing.
    assert retire_plan(store.impact(day2["raw"]), "ABANDONED") == ()
    assert apply_events(engine, events).applied == 0


def test_cli_impact_dry_run_and_retire(engine: Engine, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    day1, day2 = _two_days(engine)
    store = Store(engine)
    assert main(["impact", day2["raw"], "--url", store_url]) == 0
    out = capsys.readouterr().out
    assert "5 artifacts downstream" in out and "not deployed" in out and "AUC of slice a fell" in out
    short = store.short_ids([day1["model"], day2["model"]])
    assert short[day2["model"]] in out and short[day1["model"]] not in out
    assert "Fixed data would start again:" in out and "examplegen" in out

    assert main(["impact", day2["raw"], "--retire", "--dry-run", "--url", store_url, "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["retire"]["dry_run"] is True and dry["retire"]["applied"] == 0 and len(dry["retire"]["changes"]) == 6
    assert store.artifact(day2["model"]).state == "LIVE"

    assert main(["impact", day2["raw"], "--retire", "--state", "DELETED", "--by", "bob", "--reason", "bad join",
                 "--url", store_url]) == 0
    assert "marked 6 artifacts DELETED (reason: bad join; by bob)" in capsys.readouterr().out
    model = store.artifact(day2["model"])
    assert (model.state, model.state_reason, model.custom_properties["retired_by"]) == ("DELETED", "bad join", "bob")
    assert store.artifact(day1["model"]).state == "LIVE"

    assert main(["impact", day2["raw"], "--retire", "--state", "LIVE", "--url", store_url]) == 1
    err = capsys.readouterr().err
    assert "--state must be one of" in err and len(err.strip().splitlines()) == 1
    assert main(["impact", day2["model"][:3], "--url", store_url]) == 1
    assert "too short" in capsys.readouterr().err
