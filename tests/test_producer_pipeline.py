"""The producer against the real embedded store: what a decorated pipeline records."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import metatrail
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import (
    ArtifactRow,
    AssociationRow,
    AttributionRow,
    ContextPropertyRow,
    ContextRow,
    EdgeRow,
    ExecutionPropertyRow,
    ExecutionRow,
    MetricRow,
    ParentContextRow,
)
from metatrail import Artifact, Dataset, Model, log_metric, log_params, run, track
from metatrail.producer import emitter
from metatrail.schemas.ids import context_id
from metatrail.schemas.reserved import RUN_STATUS


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    metatrail.configure(
        transport="embedded",
        store_url=url,
        spool_path=tmp_path / "spool.db",
        strict=True,
        relay_interval_ms=20,
    )
    yield url
    emitter.shutdown(5)


def rows(url: str, model: Any) -> list[Any]:
    assert metatrail.flush(30), "events were not delivered"
    engine = open_engine(url)
    try:
        with session_scope(engine, write=False) as s:
            return list(s.scalars(select(model)))
    finally:
        engine.dispose()


@track
def prepare(raw: Dataset, fraction: float = 0.5) -> Dataset:
    log_metric("rows", 100)
    return Dataset("data/clean.csv", properties={"rows": 100})


@track(type="Trainer", exclude=["secret"])
def train(data: Dataset, epochs: int = 2, secret: str = "x", weights: Any = None) -> Model:
    for epoch in range(epochs):
        log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    return Model("models/m1")


@track
def pipeline(raw: Dataset) -> Model:
    return train(prepare(raw), epochs=3, weights=list(range(1000)))


def test_nested_pipeline_records_executions_edges_contexts_metrics(store: str) -> None:
    with run("nightly", pipeline="taxi", experiment="baseline"):
        model = pipeline(Dataset("data/raw.csv"))
    assert isinstance(model, Model)

    execs = {e.type: e for e in rows(store, ExecutionRow)}
    assert set(execs) == {"pipeline", "prepare", "Trainer"}
    assert all(e.state == "COMPLETE" and not e.is_placeholder for e in execs.values())
    assert all(e.fingerprint and len(e.fingerprint) == 64 for e in execs.values())
    assert execs["Trainer"].code_version["source_hash"]
    assert execs["Trainer"].environment["python"]

    arts = {a.uri: a for a in rows(store, ArtifactRow)}
    assert set(arts) == {"data/raw.csv", "data/clean.csv", "models/m1"}
    edges = {(e.execution_id, e.direction, e.artifact_id, e.role) for e in rows(store, EdgeRow)}
    ex = {t: e.id for t, e in execs.items()}
    a = {u: r.id for u, r in arts.items()}
    assert edges == {
        (ex["pipeline"], "INPUT", a["data/raw.csv"], "raw"),
        (ex["prepare"], "INPUT", a["data/raw.csv"], "raw"),
        (ex["prepare"], "OUTPUT", a["data/clean.csv"], "output"),
        (ex["Trainer"], "INPUT", a["data/clean.csv"], "data"),
        (ex["Trainer"], "OUTPUT", a["models/m1"], "output"),
        (ex["pipeline"], "OUTPUT", a["models/m1"], "output"),
    }
    # contexts: pipeline and experiment are the run's parents; everything is associated.
    ctx = {(c.type, c.name): c.id for c in rows(store, ContextRow)}
    run_id = str(context_id("Run", "nightly"))
    assert ctx == {
        ("Pipeline", "taxi"): str(context_id("Pipeline", "taxi")),
        ("Experiment", "baseline"): str(context_id("Experiment", "baseline")),
        ("Run", "nightly"): run_id,
    }
    parents = {(p.context_id, p.parent_id) for p in rows(store, ParentContextRow)}
    assert parents == {
        (run_id, ctx[("Pipeline", "taxi")]),
        (run_id, ctx[("Experiment", "baseline")]),
    }
    assoc = {(r.context_id, r.execution_id) for r in rows(store, AssociationRow)}
    assert assoc == {(c, e) for c in ctx.values() for e in ex.values()}
    attributed = {(r.context_id, r.artifact_id) for r in rows(store, AttributionRow)}
    assert {(run_id, aid) for aid in a.values()} <= attributed

    metrics = sorted(
        (m.key, m.step, m.value) for m in rows(store, MetricRow) if m.execution_id == ex["Trainer"]
    )
    assert metrics == [("loss", 0, 1.0), ("loss", 1, 0.5), ("loss", 2, pytest.approx(1 / 3))]
    params = {
        (p.name, p.is_custom): p
        for p in rows(store, ExecutionPropertyRow)
        if p.node_id == ex["Trainer"]
    }
    assert params[("epochs", False)].int_value == 3
    assert ("secret", False) not in params  # excluded
    assert params[("weights", False)].json_value == {"type": "list", "len": 1000}  # summarised


class Boom(RuntimeError):
    pass


@track
def explode(data: Dataset) -> None:
    raise Boom("no luck")


def test_failing_call_is_recorded_failed_and_the_same_exception_reaches_the_caller(
    store: str,
) -> None:
    with pytest.raises(Boom) as info:
        explode(Dataset("data/x.csv"))
    raised = info.value
    assert raised.args == ("no luck",)
    assert raised.__traceback__ is not None
    frames = []
    tb = raised.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert frames[-1] == "explode"  # the user's frame is still where it was raised
    (execution,) = rows(store, ExecutionRow)
    assert execution.state == "FAILED"
    assert execution.error_type.endswith("Boom")
    assert execution.error_message == "no luck"
    assert "raise Boom" in execution.error_traceback


def test_same_exception_object_is_reraised(store: str) -> None:
    err = KeyError("k")

    @track
    def f() -> None:
        raise err

    with pytest.raises(KeyError) as info:
        f()
    assert info.value is err


@track
async def fetch(i: int) -> Artifact:
    await asyncio.sleep(0.001)
    return Artifact(f"mem://shard/{i}", type="Shard")


@track
def load(i: int) -> Artifact:
    return Artifact(f"mem://thread/{i}", type="Shard")


def test_async_tasks_and_threads_inside_a_run_are_attributed_to_it(store: str) -> None:
    async def main() -> None:
        await asyncio.gather(*(fetch(i) for i in range(3)))

    with run("async-run"):
        asyncio.run(main())
        threads = [metatrail.Thread(target=load, args=(i,)) for i in range(2)]
        threads.append(threading.Thread(target=metatrail.propagate(load), args=(2,)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    run_ctx = str(context_id("Run", "async-run"))
    execs = rows(store, ExecutionRow)
    assert len(execs) == 6 and all(e.state == "COMPLETE" for e in execs)
    assoc = {r.execution_id for r in rows(store, AssociationRow) if r.context_id == run_ctx}
    assert assoc == {e.id for e in execs}


@track
def batches(n: int) -> Any:
    for i in range(n):
        log_metric("batch", i, step=i)
        yield Artifact(f"mem://batch/{i}", type="Batch")


def test_generator_is_one_execution_with_yielded_outputs(store: str) -> None:
    with run("gen"):
        got = list(batches(3))
        log_metric("outside", 1.0)  # the run's, not the generator's
    assert [a.uri for a in got] == [f"mem://batch/{i}" for i in range(3)]
    (execution,) = rows(store, ExecutionRow)
    assert execution.state == "COMPLETE"
    outputs = [e for e in rows(store, EdgeRow) if e.direction == "OUTPUT"]
    assert len(outputs) == 3
    metrics = rows(store, MetricRow)
    assert sorted(m.key for m in metrics if m.execution_id == execution.id) == ["batch"] * 3
    assert [m.key for m in metrics if m.context_id == str(context_id("Run", "gen"))] == ["outside"]


class Trainer:
    @track
    def fit(self, data: Dataset, lr: float = 0.1) -> Model:
        log_params({"optimizer": "sgd"})
        return Model("models/method")


def test_methods_leave_out_self_and_log_params_lands_on_the_execution(store: str) -> None:
    Trainer().fit(Dataset("data/m.csv"), lr=0.5)
    (execution,) = rows(store, ExecutionRow)
    assert execution.type == "Trainer.fit"
    params = {p.name: p for p in rows(store, ExecutionPropertyRow) if not p.is_custom}
    assert set(params) == {"lr", "optimizer"}
    assert params["lr"].double_value == 0.5


def test_local_files_get_a_content_digest_and_the_same_content_the_same_id(
    store: str, tmp_path: Path
) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    first, second = Dataset(str(path)), Dataset(str(path))

    @track
    def use(d: Dataset) -> None:
        return None

    use(first)
    use(second)
    assert first.digest and first.digest.startswith("sha256:")
    assert first.id == second.id
    (artifact,) = rows(store, ArtifactRow)
    assert artifact.digest == first.digest


CALLS: list[str] = []


@track(cache=True)
def featurize(data: Dataset, scale: float = 1.0) -> tuple[Artifact, Artifact]:
    CALLS.append(data.uri)
    return Artifact("mem://features/train", type="Features"), Artifact(
        "mem://features/stats", type="Stats"
    )


def test_cache_hit_skips_the_call_and_returns_the_same_shape(store: str) -> None:
    CALLS.clear()
    data = Dataset("data/cached.csv", digest="sha256:" + "ab" * 32)
    first = featurize(data, scale=2.0)
    second = featurize(Dataset("data/cached.csv", digest="sha256:" + "ab" * 32), scale=2.0)
    third = featurize(data, scale=3.0)  # other parameters: runs again
    assert CALLS == ["data/cached.csv", "data/cached.csv"]
    assert isinstance(second, tuple) and len(second) == 2
    assert [a.id for a in second] == [a.id for a in first]
    assert third[0].id != first[0].id
    execs = rows(store, ExecutionRow)
    assert sorted(e.state for e in execs) == ["CACHED", "COMPLETE", "COMPLETE"]
    (cached,) = [e for e in execs if e.state == "CACHED"]
    (original,) = [
        e for e in execs if e.state == "COMPLETE" and e.fingerprint == cached.fingerprint
    ]
    assert cached.cached_from == original.id


@track
async def stream(n: int) -> Any:
    for i in range(n):
        await asyncio.sleep(0)
        log_metric("streamed", i)
        yield Artifact(f"mem://stream/{i}", type="Chunk")


@run("decorated-run", pipeline="deco")
def decorated_main() -> list[Artifact]:
    async def consume() -> list[Artifact]:
        return [a async for a in stream(2)]

    metatrail.log_artifact(Artifact("mem://notes", type="Notes"))  # attributed to the run
    return asyncio.run(consume())


def test_run_decorator_async_generator_and_run_level_artifacts(store: str) -> None:
    got = decorated_main()
    assert [a.uri for a in got] == ["mem://stream/0", "mem://stream/1"]
    (execution,) = rows(store, ExecutionRow)
    assert execution.state == "COMPLETE" and execution.type == "stream"
    run_ctx = str(context_id("Run", "decorated-run"))
    attributed = {r.artifact_id for r in rows(store, AttributionRow) if r.context_id == run_ctx}
    assert {a.id for a in rows(store, ArtifactRow)} == attributed
    status = rows(store, ContextPropertyRow)
    assert {(p.name, p.string_value) for p in status if p.name == RUN_STATUS} == {
        (RUN_STATUS, "COMPLETE")
    }


def test_code_version_names_the_git_commit(store: str) -> None:
    train(Dataset("data/git.csv"), epochs=1)
    (execution,) = rows(store, ExecutionRow)
    commit = execution.code_version["git_commit"]
    assert commit is not None and len(commit) == 40 and int(commit, 16) >= 0
    assert execution.code_version["qualname"] == "train"
    assert isinstance(execution.code_version["git_dirty"], bool)
