"""Orchestration end to end in embedded mode: steps, triggers, workers, caching, warm start."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from metatrail.consumer.query.store import Store
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import EdgeRow, ExecutionRow
from metatrail.consumer.triggers.relay import fetch_unsent
from metatrail.consumer.worker import TriggerRunner, run_embedded
from metatrail.consumer.worker.embedded import register_steps
from metatrail.consumer.worker.lookup import dispose_shared_engines
from metatrail import Artifact, Dataset, Metrics, Model, run, track
from metatrail.producer import emitter
from metatrail.producer.steps import latest, step


@pytest.fixture
def embedded(tmp_path: Path, sqlite_url: str) -> Iterator[str]:
    """The producer in embedded mode on a fresh SQLite store; yields the store URL."""
    emitter.configure(
        transport="embedded", store_url=sqlite_url, spool_path=tmp_path / "spool.db", strict=True, relay_interval_ms=20
    )
    yield sqlite_url
    emitter.shutdown(10)
    dispose_shared_engines()


@pytest.fixture
def embedded_any(tmp_path: Path, store_url: str) -> Iterator[str]:
    """Like ``embedded`` on every backend."""
    emitter.configure(
        transport="embedded", store_url=store_url, spool_path=tmp_path / "spool.db", strict=True, relay_interval_ms=20
    )
    yield store_url
    emitter.shutdown(10)
    dispose_shared_engines()


def executions(url: str, **where: Any) -> list[ExecutionRow]:
    assert emitter.flush(30)
    engine = open_engine(url)
    try:
        with session_scope(engine, write=False) as s:
            query = select(ExecutionRow).where(ExecutionRow.is_placeholder.is_(False))
            for column, value in where.items():
                query = query.where(getattr(ExecutionRow, column) == value)
            return list(s.scalars(query.order_by(ExecutionRow.created_at)))
    finally:
        engine.dispose()


def edges_of(url: str, execution_id: str) -> list[tuple[str, str, str]]:
    engine = open_engine(url)
    try:
        with session_scope(engine, write=False) as s:
            rows = s.execute(select(EdgeRow.direction, EdgeRow.artifact_id, EdgeRow.role).where(EdgeRow.execution_id == execution_id))
            return sorted((r.direction, r.artifact_id, r.role) for r in rows)
    finally:
        engine.dispose()


def chain(pipeline: str, calls: Counter[str]) -> tuple[Any, Any, Any]:
    @track(name="ingest")
    def ingest(n: int) -> Dataset:
        return Dataset(f"mem://data/{pipeline}/{n}")

    @step(inputs={"examples": "Dataset"}, outputs=["Model"], pipeline=pipeline)
    def train(examples: Artifact) -> Model:
        calls["train"] += 1
        return Model(f"mem://models/{examples.id}")

    @step(inputs={"model": "Model"}, outputs=["Metrics"], pipeline=pipeline)
    def evaluate(model: Artifact) -> Metrics:
        calls["evaluate"] += 1
        return Metrics(f"mem://metrics/{model.id}")

    return ingest, train, evaluate


def test_a_new_dataset_runs_train_then_evaluate_once_with_lineage(embedded_any: str) -> None:
    url = embedded_any
    calls: Counter[str] = Counter()
    ingest, train, evaluate = chain("chain", calls)
    assert run_embedded([train, evaluate], timeout_s=60).ran == 0  # registers; nothing to do yet
    with run("day-1", pipeline="chain"):
        ingest(1)
    report = run_embedded([train, evaluate], timeout_s=60)
    assert not report.timed_out
    assert calls == Counter({"train": 1, "evaluate": 1})
    assert report.ran == 2
    assert run_embedded([train, evaluate], timeout_s=60).ran == 0  # nothing runs twice
    triggered = executions(url, state="COMPLETE")
    by_name = {x.name: x for x in triggered}
    assert by_name["train"].trigger_id is not None and by_name["evaluate"].trigger_id is not None
    metrics_id = next(a for d, a, _ in edges_of(url, by_name["evaluate"].id) if d == "OUTPUT")
    store = Store.open(url)
    try:
        dataset = store.latest("Dataset")
        assert dataset is not None
        graph = store.lineage(metrics_id, "upstream")
        assert dataset.id in {n.id for n in graph.nodes}
    finally:
        store.close()


def test_two_workers_receiving_the_same_trigger_run_it_once(embedded: str, caplog: pytest.LogCaptureFixture) -> None:
    calls: Counter[str] = Counter()
    ingest, train, _ = chain("twice", calls)
    register_steps([train])
    with run("r", pipeline="twice"):
        ingest(1)
    assert emitter.flush(30)
    engine = open_engine(embedded)
    try:
        (request,) = fetch_unsent(engine)
        runners = [TriggerRunner(engine, [train], worker_id=f"w{i}") for i in range(2)]
        outcomes: list[Any] = []
        barrier = threading.Barrier(2)

        def work(r: TriggerRunner) -> None:
            barrier.wait()
            outcomes.append(r.handle(request))

        threads = [threading.Thread(target=work, args=(r,)) for r in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(o.status for o in outcomes) == ["ran", "skipped"]
        assert calls["train"] == 1
        assert emitter.flush(30)
        with caplog.at_level(logging.INFO, logger="metatrail.consumer.worker.runner"):
            again = TriggerRunner(engine, [train], worker_id="w3").handle(request)  # a redelivery
        assert again.status == "skipped"
        (execution,) = executions(embedded, trigger_id=str(request.trigger_id))
        assert f"trigger {request.trigger_id} already has execution {execution.id}; skipping" in caplog.text
        assert calls["train"] == 1
    finally:
        engine.dispose()


def test_a_failing_step_is_recorded_failed_and_retried_a_bounded_number_of_times(embedded: str) -> None:
    attempts: list[str] = []

    @track(name="ingest")
    def ingest() -> Dataset:
        return Dataset("mem://data/flaky")

    @step(inputs={"data": "Dataset"}, pipeline="flaky", max_retries=2)
    def flaky(data: Artifact) -> None:
        attempts.append(data.uri)
        raise RuntimeError("boom")

    register_steps([flaky])
    with run("r", pipeline="flaky"):
        ingest()
    report = run_embedded([flaky], timeout_s=60, retry_base_s=0.01)
    assert report.failed == 3 and len(attempts) == 3  # the first attempt and 2 retries
    failed = executions(embedded, state="FAILED")
    assert len(failed) == 3 and len({x.trigger_id for x in failed}) == 1
    assert all(x.error_type and "RuntimeError" in x.error_type for x in failed)
    assert run_embedded([flaky], timeout_s=60, retry_base_s=0.01).ran == 0


def test_latest_coalesces_a_burst_and_runs_on_the_newest_input(embedded: str) -> None:
    seen: list[str] = []

    @track(name="ingest")
    def ingest(n: int) -> Dataset:
        return Dataset(f"mem://data/burst/{n}")

    @step(inputs={"data": "Dataset"}, pipeline="burst", when="latest")
    def fit(data: Artifact) -> None:
        seen.append(data.uri)
        time.sleep(0.05)

    stop = threading.Event()
    result: list[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(run_embedded([fit], until_idle=False, stop=stop, timeout_s=120))
    )
    worker.start()
    try:
        time.sleep(0.3)
        with run("burst", pipeline="burst"):
            for n in range(20):
                ingest(n)
        assert emitter.flush(30)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not seen or seen[-1] != "mem://data/burst/19"):
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(60)
    assert 1 <= len(seen) <= 5, seen
    assert seen[-1] == "mem://data/burst/19"


def test_all_new_waits_for_every_input(embedded: str) -> None:
    pairs: list[tuple[str, str]] = []

    @track(name="make")
    def make(kind: str, n: int) -> Artifact:
        return Artifact(f"mem://{kind}/{n}", kind)

    @step(inputs={"a": "A", "b": "B"}, pipeline="join", when="all_new")
    def join(a: Artifact, b: Artifact) -> None:
        pairs.append((a.uri, b.uri))

    register_steps([join])
    with run("r", pipeline="join"):
        make("A", 1)
    run_embedded([join], timeout_s=60)
    assert pairs == []
    with run("r", pipeline="join"):
        make("B", 1)
    run_embedded([join], timeout_s=60)
    assert pairs == [("mem://A/1", "mem://B/1")]
    with run("r", pipeline="join"):
        make("A", 2)
    run_embedded([join], timeout_s=60)
    assert len(pairs) == 1  # B has no newer version yet
    with run("r", pipeline="join"):
        make("B", 2)
    run_embedded([join], timeout_s=60)
    assert pairs[-1] == ("mem://A/2", "mem://B/2")


def four_steps(workdir: Path, calls: Counter[str]) -> Any:
    def write(name: str, text: str) -> str:
        path = workdir / name
        path.write_text(text)
        return str(path)

    @track(name="ingest", cache=True)
    def ingest(source: str) -> Dataset:
        calls["ingest"] += 1
        return Dataset(write("raw.csv", f"rows of {source}"))

    @track(name="transform", cache=True)
    def transform(raw: Dataset) -> Dataset:
        calls["transform"] += 1
        return Dataset(write("features.csv", "features"))

    @track(name="train", cache=True)
    def train(features: Dataset, lr: float) -> Model:
        calls["train"] += 1
        return Model(write(f"model-{lr}.bin", f"weights lr={lr}"))

    @track(name="evaluate", cache=True)
    def evaluate(model: Model, features: Dataset) -> Metrics:
        calls["evaluate"] += 1
        return Metrics(write(f"metrics-{Path(model.uri).name}.json", "{}"))

    def pipeline(lr: float) -> Metrics:
        with run("cached", pipeline="cached"):
            features = transform(ingest("s3://raw"))
            return evaluate(train(features, lr), features)  # type: ignore[no-any-return]

    return pipeline


def test_caching_reruns_only_what_changed(embedded: str, tmp_path: Path) -> None:
    calls: Counter[str] = Counter()
    pipeline = four_steps(tmp_path, calls)
    first = pipeline(0.1)
    assert calls == Counter(ingest=1, transform=1, train=1, evaluate=1)
    second = pipeline(0.1)
    assert calls == Counter(ingest=1, transform=1, train=1, evaluate=1)  # nothing ran
    assert second.id == first.id
    cached = executions(embedded, state="CACHED")
    assert sorted(x.name for x in cached) == ["evaluate", "ingest", "train", "transform"]
    assert all(x.cached_from for x in cached)
    cached_train = next(x for x in cached if x.name == "train")
    assert [d for d, _, _ in edges_of(embedded, cached_train.id)].count("OUTPUT") == 1
    # Changed params of the trainer: it and what follows rerun, the steps before do not.
    pipeline(0.2)
    assert calls == Counter(ingest=1, transform=1, train=2, evaluate=2)
    # A cached output file that is gone forces a rerun.
    (tmp_path / "model-0.1.bin").unlink()
    pipeline(0.1)
    assert calls["train"] == 3 and calls["ingest"] == 1
    assert (tmp_path / "model-0.1.bin").exists()


def test_a_cache_hit_in_a_triggered_step_carries_the_trigger_id(embedded: str) -> None:
    """A worker knows a trigger is done when an execution carrying its id exists; a step
    whose result comes from the cache must say which trigger it fulfilled too."""
    calls: Counter[str] = Counter()

    @track(name="ingest")
    def ingest() -> Dataset:
        return Dataset("mem://data/cached-trigger")

    @step(inputs={"examples": "Dataset"}, outputs=["Model"], pipeline="cached-trigger", cache=True)
    def train(examples: Artifact) -> Model:
        calls["train"] += 1
        return Model(f"mem://models/{examples.id}")

    with run("r", pipeline="cached-trigger"):
        ingest()
    assert emitter.flush(30)
    store = Store.open(embedded)
    try:
        dataset = store.latest("Dataset")
    finally:
        store.close()
    assert dataset is not None
    first, second = uuid.uuid4(), uuid.uuid4()
    made = train.run_triggered({"examples": dataset}, first)
    assert emitter.flush(30)
    reused = train.run_triggered({"examples": dataset}, second)  # same inputs: a cache hit
    assert calls["train"] == 1 and reused.id == made.id
    (ran,) = executions(embedded, state="COMPLETE", name="train")
    (cached,) = executions(embedded, state="CACHED", name="train")
    assert ran.trigger_id == str(first)
    assert cached.trigger_id == str(second) and cached.cached_from == ran.id


def test_every_event_of_a_triggered_execution_carries_the_trigger_id(tmp_path: Path) -> None:
    """Started, completed and failed alike: whichever of them the store applies first, the
    execution already says which trigger it ran for."""
    events_path = tmp_path / "events.jsonl"
    emitter.configure(transport="file", spool_path=tmp_path / "spool.db", file_path=events_path, strict=True)
    try:

        @step(inputs={"examples": "Dataset"}, pipeline="every-event", cache=False)
        def train(examples: Artifact) -> Model:
            return Model(f"mem://models/{examples.uri}")

        @step(inputs={"examples": "Dataset"}, pipeline="every-event", cache=False)
        def broken(examples: Artifact) -> None:
            raise RuntimeError("no")

        ok, failed = uuid.uuid4(), uuid.uuid4()
        train.run_triggered({"examples": Dataset("mem://data/every-event")}, ok)
        with pytest.raises(RuntimeError):
            broken.run_triggered({"examples": Dataset("mem://data/every-event")}, failed)
        assert emitter.flush(30)
        events = [json.loads(line) for line in events_path.read_text().splitlines()]
        seen = sorted((e["type"].rsplit(".", 1)[-1], e["kind"], e["trigger_id"]) for e in events if e["kind"].startswith("execution."))
        assert seen == sorted(
            [
                ("train", "execution.started", str(ok)),
                ("train", "execution.completed", str(ok)),
                ("broken", "execution.started", str(failed)),
                ("broken", "execution.failed", str(failed)),
            ]
        )
    finally:
        emitter.shutdown(10)


def test_cache_off_reruns_everything(tmp_path: Path, sqlite_url: str) -> None:
    emitter.configure(transport="embedded", store_url=sqlite_url, spool_path=tmp_path / "spool.db", strict=True, cache="off")
    try:
        calls: Counter[str] = Counter()
        pipeline = four_steps(tmp_path, calls)
        pipeline(0.1)
        pipeline(0.1)
        assert calls == Counter(ingest=2, transform=2, train=2, evaluate=2)
    finally:
        emitter.shutdown(10)
        dispose_shared_engines()


def test_warm_start_records_the_base_model_as_an_input(embedded: str) -> None:
    @track(name="fit")
    def fit(n: int) -> Model:
        base = latest("Model", pipeline="warm")
        return Model(f"mem://models/{n}", properties={"from": base.uri if base else ""})

    with run("r1", pipeline="warm"):
        m1 = fit(1)
    with run("r2", pipeline="warm"):
        fit(2)
    runs = executions(embedded, name="fit")
    assert len(runs) == 2
    assert not [e for e in edges_of(embedded, runs[0].id) if e[0] == "INPUT"]
    assert ("INPUT", str(m1.id), "base_model") in edges_of(embedded, runs[1].id)
    assert latest("Model", pipeline="elsewhere") is None


def test_artifacts_outside_the_pipeline_do_not_trigger(embedded: str) -> None:
    calls: Counter[str] = Counter()
    ingest, train, _ = chain("scoped", calls)
    register_steps([train])
    with run("r", pipeline="other"):
        ingest(1)
    ingest(2)  # no run at all
    assert run_embedded([train], timeout_s=60).ran == 0
    assert calls["train"] == 0




def test_a_step_does_not_trigger_on_its_own_outputs(embedded: str) -> None:
    seen: list[str] = []

    @track(name="ingest")
    def ingest() -> Dataset:
        return Dataset("mem://data/raw")

    @step(inputs={"data": "Dataset"}, outputs=["Dataset"], pipeline="self")
    def clean(data: Artifact) -> Dataset:
        seen.append(data.uri)
        return Dataset(f"{data.uri}+clean")

    register_steps([clean])
    with run("r", pipeline="self"):
        ingest()
    report = run_embedded([clean], timeout_s=60)
    assert not report.timed_out
    assert seen == ["mem://data/raw"]
