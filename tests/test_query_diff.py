"""``Store.diff``: synthetic pipelines that differ in one thing each, on every backend."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine

from metatrail import Store
from metatrail.consumer.cli import main
from metatrail.consumer.query.diffmodel import Diff, StepPair
from metatrail.schemas.errors import FilterError, NotFoundError
from metatrail.schemas.ids import context_id
from tests.fixtures.pipelines import Runs, ctr_run


def _step(d: Diff, type_: str, kind: str = "lineage") -> StepPair:
    found = [s for s in d.steps if s.type == type_ and s.kind == kind]
    assert len(found) == 1, [(s.type, s.kind, s.status) for s in d.steps]
    return found[0]


def test_only_a_trainer_parameter_changed(engine: Engine) -> None:
    r = Runs()
    a = ctr_run(r, "day-1")
    b = ctr_run(r, "day-2", raw=a["raw"], examplegen=a["examplegen"], examples=a["examples"],
                trainer={"params": {"learning_rate": 0.1, "epochs": 5}},
                aucs={"auc": 0.78, "auc/a": 0.70, "auc/b": 0.80})
    r.apply(engine)
    d = Store(engine).diff(a["model"], b["model"])

    assert d.aligned and d.pipelines == {"a": ["ctr"], "b": ["ctr"]}
    trainer = _step(d, "Trainer")
    assert trainer.status == "changed"
    assert [(c.key, c.a, c.b) for c in trainer.parameters] == [("learning_rate", 0.01, 0.1)]
    assert not trainer.code and not trainer.environment
    assert [(p.role, p.status) for p in trainer.inputs] == [("examples", "same")]
    assert _step(d, "ExampleGen").status == "same"  # one shared execution
    assert d.verdict.first == "Trainer"
    assert d.verdict.text == "first difference: Trainer ran with learning_rate=0.1 instead of 0.01"
    assert d.verdict.chain == ("Trainer", "Model model")
    # The evaluator read the target: its metrics side by side, the worst slice first.
    auc = next(m for m in d.metrics if m.metric == "auc")
    assert auc.step == "Evaluator" and (auc.a, auc.b) == (0.80, 0.78)
    assert [(s.slice, s.delta) for s in auc.slices] == [("a", pytest.approx(-0.11)), ("b", pytest.approx(0.01))]
    assert d.verdict.largest_drop == "Evaluator auc/a 0.81 → 0.7 (-0.11)"
    assert d.counts == {"changed": 2, "same": 1}  # Trainer, Evaluator; ExampleGen


def test_only_the_code_of_one_step_changed(engine: Engine) -> None:
    r = Runs()
    a = ctr_run(r, "day-1")
    # Day 2 reads the same raw data with new code in ExampleGen, whose output then differs.
    ex = r.artifact("day-2:examples", "Examples", content="examples-2", span=1)
    gen = r.step("day-2:examplegen", "ExampleGen", inputs={"raw": a["raw"]}, outputs={"examples": ex},
                 params={"split": 0.2}, code="src-2")
    b = ctr_run(r, "day-2", raw=a["raw"], examplegen=gen, examples=ex)
    r.apply(engine)
    d = Store(engine).diff(a["model"], b["model"])

    step = _step(d, "ExampleGen")
    assert step.status == "changed" and not step.parameters and not step.environment
    assert [(c.key, c.a, c.b) for c in step.code] == [("source_hash", "src-1", "src-2")]
    assert [(p.role, p.status) for p in step.inputs] == [("raw", "same")]
    assert [(p.role, p.status) for p in step.outputs] == [("examples", "changed")]
    trainer = _step(d, "Trainer")
    assert trainer.status == "changed" and not trainer.parameters and not trainer.code
    assert d.verdict.first == "Trainer<examples<ExampleGen"
    assert d.verdict.text.startswith("first difference: ExampleGen ran changed code (source_hash src-1 → src-2")
    assert d.verdict.chain == ("ExampleGen", "Examples examples", "Trainer", "Model model")
    # The statistics of each day's examples are checks on each side's own data.
    stats = _step(d, "StatisticsGen", "observer")
    assert stats.key == "Trainer<examples<ExampleGen>examples>StatisticsGen"
    assert stats.status == "changed" and [(p.role, p.status) for p in stats.inputs] == [("examples", "changed")]


def test_a_step_added_upstream(engine: Engine) -> None:
    r = Runs()
    a = ctr_run(r, "day-1")
    tx = r.artifact("day-2:transformed", "Examples", content="transformed", span=1)
    transform = r.step("day-2:transform", "Transform", inputs={"examples": a["examples"]}, outputs={"examples": tx})
    b = ctr_run(r, "day-2", raw=a["raw"], examplegen=transform, examples=tx)
    r.apply(engine)
    d = Store(engine).diff(a["model"], b["model"])

    added = _step(d, "Transform")
    assert added.status == "added" and added.a is None and added.key == "Trainer<examples<Transform"
    assert [(p.role, p.status) for p in added.inputs] == [("examples", "added")]
    # ExampleGen is still matched (one execution, now one step further up on B's side).
    gen = _step(d, "ExampleGen")
    assert gen.status == "same" and gen.key == "Trainer<examples<Transform<examples<ExampleGen"
    assert not [s for s in d.steps if s.status == "removed"]
    assert d.verdict.text == "first difference: B has a step A lacks: Transform"
    assert d.verdict.chain == ("Transform", "Examples examples", "Trainer", "Model model")


def test_a_package_version_changed(engine: Engine) -> None:
    r = Runs()
    a = ctr_run(r, "day-1")
    # Day 2 reruns everything on the same data; only the trainer's numpy differs, and
    # ExampleGen ran on another host (listed, but not a change).
    ex = r.artifact("day-2:examples", "Examples", content="examples-1", span=1)
    gen = r.step("day-2:examplegen", "ExampleGen", inputs={"raw": a["raw"]}, outputs={"examples": ex},
                 params={"split": 0.2}, host="worker-2")
    b = ctr_run(r, "day-2", raw=a["raw"], examplegen=gen, examples=ex,
                trainer={"packages": {"numpy": "2.0.1", "keras": "3.5.0"}})
    r.apply(engine)
    d = Store(engine).diff(a["model"], b["model"])

    gen_pair = _step(d, "ExampleGen")
    assert gen_pair.status == "unchanged"
    assert [(c.key, c.a, c.b) for c in gen_pair.environment] == [("host", "worker-1", "worker-2")]
    assert [(p.role, p.status) for p in gen_pair.outputs] == [("examples", "equal")]
    trainer = _step(d, "Trainer")
    assert trainer.status == "changed"
    assert [(c.key, c.a, c.b) for c in trainer.environment] == [("packages.numpy", "1.26.4", "2.0.1")]
    assert d.verdict.text == ("first difference: Trainer ran in a changed environment "
                              "(packages.numpy 1.26.4 → 2.0.1)")


def test_models_of_two_pipelines_are_not_aligned(engine: Engine, capsys: pytest.CaptureFixture[str],
                                                   store_url: str) -> None:
    ctr, fraud = Runs("ctr"), Runs("fraud")
    a = ctr_run(ctr, "day-1")
    b = ctr_run(fraud, "other-day-1")
    ctr.apply(engine)
    fraud.apply(engine)
    d = Store(engine).diff(a["model"], b["model"])
    assert not d.aligned and d.steps == () and d.metrics == ()
    assert d.pipelines == {"a": ["ctr"], "b": ["fraud"]}
    assert d.verdict.text.startswith("no alignment: A belongs to pipeline ctr and B to fraud")

    assert main(["diff", a["model"], b["model"], "--url", store_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["aligned"] is False and out["steps"] == [] and "fraud" in out["note"]


def test_cache_hit_executions_and_runs(engine: Engine) -> None:
    r = Runs()
    a = ctr_run(r, "day-1")
    # Day 2: ExampleGen served from the cache (same output), a new trainer with more epochs.
    gen = r.step("day-2:examplegen", "ExampleGen", inputs={"raw": a["raw"]}, outputs={"examples": a["examples"]},
                 params={"split": 0.2}, cached_from=a["examplegen"])
    b = ctr_run(r, "day-2", raw=a["raw"], examplegen=gen, examples=a["examples"],
                trainer={"params": {"learning_rate": 0.01, "epochs": 9}})
    r.apply(engine)
    store = Store(engine)
    d = store.diff(a["model"], b["model"])
    gen_pair = _step(d, "ExampleGen")
    assert gen_pair.status == "unchanged" and gen_pair.b is not None and gen_pair.b.state == "CACHED"
    assert gen_pair.cache is not None and gen_pair.cache.b_reused_a

    # Two executions compare the same way, from the executions themselves.
    x = store.diff(a["trainer"], b["trainer"])
    assert x.target is None and x.verdict.text == "first difference: Trainer ran with epochs=9 instead of 5"
    assert [(p.role, p.status) for p in _step(x, "Trainer").outputs] == [("model", "changed")]
    # A prefix names a node; the same node twice differs in nothing.
    same = store.diff(a["model"][:13], a["model"])
    assert {s.status for s in same.steps} == {"same"}
    assert same.verdict.text == "no difference: A and B have the same lineage and content"


def test_two_datasets_nothing_recorded_made(engine: Engine) -> None:
    r = Runs()
    a, b = ctr_run(r, "day-1"), ctr_run(r, "day-2", aucs={"auc": 0.7})
    r.apply(engine)
    d = Store(engine).diff(a["raw"], b["raw"])
    assert d.target is not None and d.target.status == "equal"  # same content, another file
    assert [(s.type, s.kind, s.status) for s in d.steps] == [("ExampleGen", "consumer", "unchanged")]
    raw3 = r.artifact("day-3:raw", "Dataset", content="rows-3", rows=1200)
    r.apply(engine)
    d = Store(engine).diff(a["raw"], raw3)
    assert d.target is not None and d.target.status == "changed"
    assert [(c.key, c.a, c.b) for c in d.target.properties] == [("rows", 1000, 1200)]
    assert d.verdict.text.startswith("first difference: the Datasets themselves (no step that made them is "
                                     "recorded): ctr/day-3:raw (sha256 ")
    assert [(s.type, s.status) for s in d.steps] == [("ExampleGen", "removed")]


def test_two_runs(engine: Engine) -> None:
    r = Runs()
    r.run = "day-1"
    ctr_run(r, "day-1")
    r.run = "day-2"
    ctr_run(r, "day-2", trainer={"params": {"learning_rate": 0.01, "epochs": 7}}, aucs={"auc": 0.75})
    r.apply(engine)
    d = Store(engine).diff(str(context_id("Run", "day-1")), str(context_id("Run", "day-2")))
    # Depth counts back from the run's last steps; same data, a new trainer setting.
    assert {(s.type, s.status) for s in d.steps} == {
        ("ExampleGen", "unchanged"), ("StatisticsGen", "unchanged"), ("Trainer", "changed"), ("Evaluator", "changed")}
    assert d.verdict.text == "first difference: Trainer ran with epochs=7 instead of 5"
    assert d.verdict.chain == ("Trainer", "Model model", "Evaluator")
    assert [(m.step, m.metric, m.a, m.b) for m in d.metrics] == [("Evaluator", "auc", 0.8, 0.75)]


def test_bad_arguments(engine: Engine, store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    r = Runs()
    a = ctr_run(r, "day-1")
    r.apply(engine)
    store = Store(engine)
    with pytest.raises(FilterError, match="is an artifact and .* an execution"):
        store.diff(a["model"], a["trainer"])
    with pytest.raises(NotFoundError):
        store.diff(a["model"], "00000000-0000-0000-0000-000000000000")
    assert main(["diff", a["model"], "nothex", "--url", store_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("metatrail: error:") and len(err.strip().splitlines()) == 1
    assert main(["diff", a["model"], a["model"], "--hops", "-1", "--url", store_url]) == 1
    assert "--hops" in capsys.readouterr().err


def test_cli_prints_the_verdict_and_the_steps(engine: Engine, store_url: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    r = Runs()
    a = ctr_run(r, "day-1")
    b = ctr_run(r, "day-2", raw=a["raw"], examplegen=a["examplegen"], examples=a["examples"],
                trainer={"params": {"learning_rate": 0.1, "epochs": 5}}, aucs={"auc": 0.7, "auc/a": 0.6})
    r.apply(engine)
    assert main(["diff", a["model"], b["model"], "--url", store_url]) == 0
    out = capsys.readouterr().out
    assert "first difference: Trainer ran with learning_rate=0.1 instead of 0.01" in out
    assert "param learning_rate: 0.01 → 0.1" in out and "Metrics of the targets" in out
    assert main(["diff", a["model"], b["model"], "--url", store_url, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"]["first"] == "Trainer" and data["a"]["id"] == a["model"]
    trainer = next(s for s in data["steps"] if s["type"] == "Trainer")
    assert trainer["parameters"] == [{"key": "learning_rate", "a": 0.01, "b": 0.1, "change": "changed",
                                      "delta": 0.09, "relative": 9.0}]
