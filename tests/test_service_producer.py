"""Producer SDK → Kafka → consume loop → store, including a broker outage mid-training.

About the outage test: the test broker (tansu) keeps everything in memory, so a restarted
broker is empty — no topics, no committed offsets, no messages. The test therefore shows
that the producer keeps training unblocked, spools what the broker did not acknowledge and
re-delivers it once the broker is back, and that the consumer (rejoining an empty group)
applies it so the store ends up complete. It cannot show that messages a broker had
acknowledged survive the broker's restart (that is the broker's durability; events
acknowledged before the outage were applied before it is stopped here), nor resuming from
committed offsets after a restart.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

import metatrail
from metatrail.consumer.service.topics import ensure_topics
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import ArtifactRow, ContextRow, EdgeRow, ExecutionRow, MetricRow
from metatrail import Artifact, Dataset, Model, log_metric, run, track
from metatrail.producer import emitter
from metatrail.schemas.ids import context_id
from tests.fixtures.broker import TansuBroker, kafka_test_settings
from tests.fixtures.service import applied_count, dead_letter_count, running_loop, wait_for

pytestmark = pytest.mark.kafka


@track
def prepare(source: Dataset) -> Dataset:
    return Dataset(f"mem://prepared/{source.uri}")


@track
def train(data: Dataset, epochs: int = 3) -> Model:
    for epoch in range(epochs):
        log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    return Model("mem://models/m1")


@track
def train_epoch(epoch: int) -> Artifact:
    log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    return Artifact(f"mem://ckpt/{epoch}", type="Checkpoint")


def _graph(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with session_scope(engine, write=False) as s:
        def count(model, *where):  # type: ignore[no-untyped-def]
            return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        return {
            "complete": count(ExecutionRow, ExecutionRow.state == "COMPLETE"),
            "executions": count(ExecutionRow),
            "placeholders": count(ExecutionRow, ExecutionRow.is_placeholder.is_(True))
            + count(ArtifactRow, ArtifactRow.is_placeholder.is_(True))
            + count(ContextRow, ContextRow.is_placeholder.is_(True)),
            "outputs": count(EdgeRow, EdgeRow.direction == "OUTPUT"),
            "inputs": count(EdgeRow, EdgeRow.direction == "INPUT"),
            "metrics": count(MetricRow),
        }


def test_pipeline_recorded_with_the_producer_appears_complete(
    kafka_bootstrap: str, topic_prefix: str, store_url: str, tmp_path: Path
) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, store_url)
    metatrail.configure(
        transport="kafka", kafka_bootstrap=kafka_bootstrap, kafka_topic_prefix=topic_prefix,
        spool_path=tmp_path / "spool.db", strict=True, relay_interval_ms=20,
    )
    engine = open_engine(store_url)
    try:
        with running_loop(settings, engine):
            # names unique per test: the producer announces a context once per process
            with run(f"nightly-{topic_prefix}", pipeline=f"e2e-{topic_prefix}"):
                model = train(prepare(Dataset("mem://raw")), epochs=4)
            assert model.uri == "mem://models/m1"
            assert metatrail.flush(60)
            expected = {"complete": 2, "executions": 2, "placeholders": 0, "outputs": 2, "inputs": 2,
                        "metrics": 4}
            wait_for(lambda: _graph(engine) == expected, 60, what=f"the whole graph {expected}")
        with session_scope(engine, write=False) as s:
            run_ctx = s.get(ContextRow, str(context_id("Run", f"nightly-{topic_prefix}")))
            assert run_ctx is not None and not run_ctx.is_placeholder
        assert dead_letter_count(engine) == 0
    finally:
        emitter.shutdown(5)
        engine.dispose()


@pytest.mark.slow
def test_broker_stopped_during_training_then_every_event_arrives(
    restartable_broker: TansuBroker, tmp_path: Path, server_databases: dict
) -> None:
    from tests.fixtures.backends import backend_url

    broker = restartable_broker
    store_url = backend_url("postgresql", server_databases, tmp_path)
    prefix = f"mt-outage-{uuid.uuid4().hex[:8]}"
    settings = kafka_test_settings(broker.bootstrap, prefix, store_url)
    metatrail.configure(
        transport="kafka", kafka_bootstrap=broker.bootstrap, kafka_topic_prefix=prefix,
        kafka_request_timeout_ms=3_000, spool_path=tmp_path / "spool.db", strict=True, relay_interval_ms=20,
    )
    engine = open_engine(store_url)
    epochs = 30
    try:
        with running_loop(settings, engine) as loop:
            assert loop.started.wait(30)
            with run("outage-run", pipeline="outage"):
                for epoch in range(10):
                    train_epoch(epoch)
                assert metatrail.flush(60)
                wait_for(lambda: _graph(engine)["complete"] == 10, 60, what="first epochs applied")
                before = applied_count(engine)

                broker.stop()
                for epoch in range(10, 20):  # the broker is down: these wait in the spool
                    train_epoch(epoch)
                assert not metatrail.flush(0.5)
                assert emitter.get().spool.pending() > 0
                assert applied_count(engine) == before

                broker.start()  # empty: the topics are created again as at first start-up
                ensure_topics(settings)
                for epoch in range(20, epochs):
                    train_epoch(epoch)
            assert metatrail.flush(90), "spooled events were not delivered after the broker came back"
            assert emitter.get().spool.pending() == 0
            wait_for(lambda: _graph(engine)["complete"] == epochs, 120, what="every epoch applied")
        graph = _graph(engine)
        assert graph["executions"] == graph["complete"] == epochs
        assert graph["outputs"] == epochs and graph["metrics"] == epochs
        assert dead_letter_count(engine) == 0
        with session_scope(engine, write=False) as s:
            steps = sorted(s.scalars(select(MetricRow.step)))
            run_ctx = s.get(ContextRow, str(context_id("Run", "outage-run")))
        assert steps == list(range(epochs))
        assert run_ctx is not None and not run_ctx.is_placeholder
    finally:
        emitter.shutdown(5)
        engine.dispose()
