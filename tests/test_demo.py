"""`metatrail demo` end to end in a fresh directory, then what the store holds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metatrail.consumer.cli import main
from metatrail.consumer.query.store import Store
from metatrail.producer import emitter

STEPS = ("ExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator", "Trainer", "Evaluator", "Pusher")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]


@pytest.fixture
def demo_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Store, str, pytest.CaptureFixture[str]]]:
    """Run `metatrail demo --framework numpy` in tmp_path (the cwd); yield the store and
    what it printed."""
    assert Path.cwd() == tmp_path
    try:
        assert main(["demo", "--framework", "numpy"]) == 0
        out = capsys.readouterr().out
        store = Store.open("sqlite:///.metatrail/metadata.db")
        yield store, out, capsys
        store.close()
    finally:
        emitter.configure()  # drop the demo's emitter (and its spool in tmp_path)


def _executions(store: Store, step: str) -> list[Any]:
    return sorted(store.executions(f"type = '{step}'", limit=100).items, key=lambda e: e.created_at)


def test_demo_records_both_days(demo_store: tuple[Store, str, pytest.CaptureFixture[str]]) -> None:
    store, out, capsys = demo_store
    assert Path(".metatrail/metadata.db").exists()
    assert Path(".metatrail/demo/raw/impressions-day2.csv").exists()

    for step in STEPS:
        assert len(_executions(store, step)) == 2, step
    runs = [c.name for c in store.contexts("type = 'Run'").items]
    assert len([r for r in runs if r and r.startswith("shoe-ctr/day-")]) == 2

    # Day 2: the unchanged SchemaGen is served from the cache, the others run.
    first, second = _executions(store, "SchemaGen")
    assert first.state == "COMPLETE" and second.state == "CACHED"
    assert second.cached_from == first.id
    for step in ("ExampleGen", "StatisticsGen", "ExampleValidator", "Trainer", "Evaluator", "Pusher"):
        assert [e.state for e in _executions(store, step)] == ["COMPLETE", "COMPLETE"], step

    # The validator found the drift of men's dress shoes on day 2 only.
    anomalies = sorted(store.artifacts("type = 'ExampleAnomalies'").items, key=lambda a: a.created_at)
    assert [a.properties["drift"] for a in anomalies] == [False, True]
    drifted = anomalies[1].custom_properties["drifted"]
    assert "price@product_category=mens_dress" in drifted
    assert not any("running" in d or "sandals" in d for d in drifted)
    assert "new_category" in anomalies[1].properties["kinds"]
    # ...against day 1's statistics, found through the store and recorded as an input.
    validator_day2 = _executions(store, "ExampleValidator")[1]
    graph = store.lineage(validator_day2.id, "upstream", max_hops=1)
    assert "baseline" in {e.role for e in graph.edges}

    # The slice's AUC fell; the others held.
    day1, day2 = (_metrics(store, e.id) for e in _executions(store, "Evaluator"))
    assert day2["auc/mens_dress"] < day1["auc/mens_dress"] - 0.1
    assert abs(day2["auc/running"] - day1["auc/running"]) < 0.05

    # The pusher deployed day 1 and refused day 2, saying why.
    pushed = sorted(store.artifacts("type = 'PushedModel'").items, key=lambda a: a.created_at)
    assert [p.properties["pushed"] for p in pushed] == [True, False]
    assert "mens_dress" in pushed[1].properties["reason"]
    assert (Path(pushed[0].uri or "") / "model").is_dir()

    # The newest model's lineage reaches the day-2 raw data.
    model = sorted(store.artifacts("type = 'Model'").items, key=lambda a: a.created_at)[-1]
    types = {n.type for n in store.lineage(model.id, "upstream").nodes}
    assert {"Trainer", "Examples", "ExampleGen", "ImpressionLog", "Schema", "SchemaGen", "FeatureSpec"} <= types

    # What the user sees at the end.
    assert "Lineage of the newest model" in out
    assert "mens_dress" in out and "not deployed" in out
    short = store.short_ids([model.id])[model.id]
    assert f"metatrail lineage {short} --up" in out and model.id not in out  # ids as tables print them
    assert "Store:" in out and "metadata.db" in out
    assert f"run metatrail serve, then open http://127.0.0.1:8181/lineage/{short}" in " ".join(out.split())

    # A second demo in the same place has nothing new to do: it says so instead.
    assert main(["demo", "--framework", "numpy"]) == 1
    assert "already holds a demo run" in capsys.readouterr().out


def _metrics(store: Store, execution_id: str) -> dict[str, float]:
    return {p.key: p.value for p in store.metrics(execution_id)}


@pytest.mark.kafka
def test_demo_through_kafka_with_consume_and_worker_processes(
    kafka_bootstrap: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        assert main(["demo", "--kafka", kafka_bootstrap, "--framework", "numpy"]) == 0
    finally:
        emitter.configure()
    out = capsys.readouterr().out
    assert "started metatrail consume" in out and "started metatrail worker" in out
    store = Store.open("sqlite:///.metatrail/metadata.db")
    try:
        for step in STEPS:
            runs = _executions(store, step)
            assert len(runs) == 2, step
            ran = [e for e in runs if e.state == "COMPLETE"]
            assert ran and all(e.trigger_id for e in ran), step  # run by the worker, on triggers
        assert [e.state for e in _executions(store, "SchemaGen")] == ["COMPLETE", "CACHED"]
        pushed = sorted(store.artifacts("type = 'PushedModel'").items, key=lambda a: a.created_at)
        assert [p.properties["pushed"] for p in pushed] == [True, False]
    finally:
        store.close()
    assert "worker" in Path(".metatrail/demo/logs/worker.log").read_text()


def test_demo_with_keras_trainer_records_the_fits(capsys: pytest.CaptureFixture[str]) -> None:
    from metatrail.consumer.demo.model import keras_available

    if not keras_available():
        pytest.skip("Keras 3 and a backend are not installed")
    try:
        assert main(["demo", "--framework", "keras", "--rows", "6000"]) == 0
    finally:
        emitter.configure()
    assert "trainer on keras" in capsys.readouterr().out
    store = Store.open("sqlite:///.metatrail/metadata.db")
    try:
        fits = store.executions("type = 'keras.fit'").items
        assert len(fits) == 2 and all(f.state == "COMPLETE" for f in fits)
        assert sorted(p.step for p in store.metrics(fits[0].id, "loss")) == list(range(6))
        models = store.artifacts("type = 'Model'").items
        assert all((Path(m.uri or "") / "model.keras").exists() for m in models)
    finally:
        store.close()
