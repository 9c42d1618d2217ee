"""Orchestration through the real broker: consume loop + trigger relay + a worker group."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import AppliedEventRow, ExecutionRow, StepRow, TriggerOutboxRow
from metatrail.consumer.triggers.kafka import KafkaTriggerPublisher
from metatrail.consumer.triggers.relay import kafka_relay, request_event
from metatrail.consumer.worker.embedded import register_steps
from metatrail.consumer.worker.kafka import KafkaWorker
from metatrail.consumer.worker.lookup import dispose_shared_engines
from metatrail import Artifact, Dataset, Metrics, Model, run, track
from metatrail.producer import emitter
from metatrail.producer.steps import step
from metatrail.schemas.settings import Settings
from tests.fixtures.broker import kafka_test_settings
from tests.fixtures.service import running_in_thread, running_loop, wait_for

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def running_worker(
    settings: Settings, engine: Engine, steps: list[Any], worker_id: str
) -> contextlib.AbstractContextManager[KafkaWorker]:
    return running_in_thread(KafkaWorker(settings, engine, steps, worker_id=worker_id), f"worker-{worker_id}")


def count(engine: Engine, model: Any, *where: Any) -> int:
    with session_scope(engine, write=False) as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def kafka_settings(kafka_bootstrap: str, topic_prefix: str, sqlite_url: str, tmp_path: Path) -> Iterator[Settings]:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, sqlite_url, spool_path=tmp_path / "spool.db", relay_interval_ms=20)
    emitter.configure(**settings.model_dump(exclude_defaults=True), strict=True)
    yield settings
    emitter.shutdown(10)
    dispose_shared_engines()


def test_chain_through_kafka_runs_each_step_once_despite_redelivery(kafka_settings: Settings) -> None:
    settings = kafka_settings
    calls: Counter[str] = Counter()

    @track(name="ingest")
    def ingest(n: int) -> Dataset:
        return Dataset(f"mem://data/{n}")

    @step(inputs={"examples": "Dataset"}, outputs=["Model"], pipeline="kchain")
    def train(examples: Artifact) -> Model:
        calls["train"] += 1
        return Model(f"mem://models/{examples.id}")

    @step(inputs={"model": "Model"}, outputs=["Metrics"], pipeline="kchain")
    def evaluate(model: Artifact) -> Metrics:
        calls["evaluate"] += 1
        return Metrics(f"mem://metrics/{model.id}")

    steps = [train, evaluate]
    engine = open_engine(settings.store_url)
    relay = kafka_relay(settings, engine, interval_s=0.2)
    try:
        with relay, running_loop(settings, engine, on_batch=relay.on_batch), \
                running_worker(settings, engine, steps, "w1") as w1, \
                running_worker(settings, engine, steps, "w2") as w2:
            register_steps(steps)
            assert emitter.flush(30)
            wait_for(lambda: count(engine, StepRow) == 2, 60, what="steps registered")
            with run("day-1", pipeline="kchain"):
                ingest(1)
            wait_for(lambda: count(engine, ExecutionRow, ExecutionRow.name == "evaluate",
                                   ExecutionRow.state == "COMPLETE") == 1, 90, what="evaluate completed")
            assert calls == Counter(train=1, evaluate=1)
            with session_scope(engine, write=False) as s:
                rows = list(s.scalars(select(TriggerOutboxRow)))
            assert len(rows) == 2 and all(r.sent_at is not None for r in rows)
            # The relay dies between publish and mark: the same requests are published again.
            publisher = KafkaTriggerPublisher(settings)
            try:
                publisher.publish([request_event(r.trigger_id, r.step_id, r.step_name, dict(r.inputs)) for r in rows])
            finally:
                publisher.close()
            wait_for(lambda: sum(o.status == "skipped" for o in w1.outcomes + w2.outcomes) >= 2, 60,
                     what="the republished triggers to be skipped")
            # The consumer dies between its DB commit and its offset commit: every batch is
            # delivered again (a fresh group re-reads the topic from the start).
            replay = settings.model_copy(update={"kafka_group": settings.kafka_group + "-replay"})
            with running_loop(replay, engine) as loop:
                applied = count(engine, AppliedEventRow)
                wait_for(lambda: loop.stats.duplicates >= applied, 60, what="the replay of every event")
                assert loop.stats.applied == 0
            relay.notify()
            assert emitter.flush(30)
            outcomes = w1.outcomes + w2.outcomes
        assert calls == Counter(train=1, evaluate=1)
        assert count(engine, TriggerOutboxRow) == 2
        for name in ("train", "evaluate"):
            assert count(engine, ExecutionRow, ExecutionRow.name == name) == 1
        assert sorted(o.status for o in outcomes).count("ran") == 2
        assert count(engine, ExecutionRow, ExecutionRow.trigger_id.is_not(None)) == 2
    finally:
        engine.dispose()


WORKER_MODULE = """
from pathlib import Path

from metatrail import Model
from metatrail.producer.steps import step


@step(inputs={"data": "Dataset"}, outputs=["Model"], pipeline="kcli")
def fit(data):
    Path("fit-ran.txt").write_text(data.uri)
    return Model("mem://models/kcli")
"""


def test_worker_command_runs_steps_from_the_triggers_topic(kafka_settings: Settings, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from tests.fixtures.broker import settings_env

    settings = kafka_settings
    (tmp_path / "orch_kafka_steps.py").write_text(WORKER_MODULE)
    env = {**os.environ, **settings_env(settings), "METATRAIL_SPOOL_PATH": str(tmp_path / "worker-spool.db")}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])

    @track(name="ingest")
    def ingest() -> Dataset:
        return Dataset("mem://data/kcli")

    engine = open_engine(settings.store_url)
    relay = kafka_relay(settings, engine, interval_s=0.2)
    worker = subprocess.Popen(
        [sys.executable, "-m", "metatrail", "worker", "orch_kafka_steps", "--idle-timeout-s", "60"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        with relay, running_loop(settings, engine, on_batch=relay.on_batch):
            wait_for(lambda: count(engine, StepRow) == 1, 60, what="the worker to register its step")
            with run("r", pipeline="kcli"):
                ingest()
            wait_for(lambda: (tmp_path / "fit-ran.txt").exists(), 60, what="the step to run")
            wait_for(lambda: count(engine, ExecutionRow, ExecutionRow.name == "fit",
                                   ExecutionRow.state == "COMPLETE") == 1, 60, what="the execution")
        assert (tmp_path / "fit-ran.txt").read_text() == "mem://data/kcli"
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=60)
        engine.dispose()
    assert worker.returncode in (0, -15), out.decode(errors="replace")


def test_a_failed_step_is_retried_through_the_topic(kafka_settings: Settings) -> None:
    settings = kafka_settings
    attempts: list[int] = []

    @track(name="ingest")
    def ingest() -> Dataset:
        return Dataset("mem://data/kretry")

    @step(inputs={"data": "Dataset"}, pipeline="kretry", max_retries=1)
    def shaky(data: Artifact) -> None:
        attempts.append(len(attempts))
        if len(attempts) == 1:
            raise RuntimeError("first attempt fails")

    engine = open_engine(settings.store_url)
    relay = kafka_relay(settings, engine, interval_s=0.2)
    worker = KafkaWorker(settings, engine, [shaky], worker_id="w", retry_base_s=0.2)
    try:
        with relay, running_loop(settings, engine, on_batch=relay.on_batch), running_in_thread(worker, "worker-w"):
            register_steps([shaky])
            wait_for(lambda: count(engine, StepRow) == 1, 60, what="the step registered")
            with run("r", pipeline="kretry"):
                ingest()
            wait_for(lambda: count(engine, ExecutionRow, ExecutionRow.name == "shaky",
                                   ExecutionRow.state == "COMPLETE") == 1, 90, what="the retry to complete")
            assert count(engine, ExecutionRow, ExecutionRow.name == "shaky", ExecutionRow.state == "FAILED") == 1
        assert attempts == [0, 1]
        assert [(o.status, o.attempt) for o in worker.outcomes] == [("failed", 0), ("ran", 1)]
        with session_scope(engine, write=False) as s:
            trigger_ids = set(s.scalars(select(ExecutionRow.trigger_id).where(ExecutionRow.name == "shaky")))
        assert len(trigger_ids) == 1 and None not in trigger_ids
    finally:
        engine.dispose()
