"""OpenLineage out: what ``metatrail export --format openlineage`` writes validates against
the spec's schemas and comes back through ``ingest`` as the same runs, datasets and
edges; and an Airflow lineage and a ``@track`` pipeline that reads one of its datasets
are one graph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import metatrail
from metatrail import Dataset, Model, log_metric, run, track
from metatrail.consumer.cli import main
from metatrail.consumer.openlineage import naming
from metatrail.consumer.query.store import Store
from metatrail.producer import emitter
from metatrail.schemas.ids import context_id
from tests.fixtures.backends import BACKENDS, backend_url
from tests.fixtures.openlineage import requires_shared, scenario_payloads, schema_errors

SOURCE = "gs://mock-bucket/result.csv"


@track(type="Trainer", cache=True)
def train(data: Dataset, lr: float = 0.1, epochs: int = 2) -> Model:
    for epoch in range(epochs):
        log_metric("loss", 1.0 / (epoch + 2), step=epoch)
    path = Path("models") / f"ctr-{lr}.txt"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"weights {lr}")
    return Model(str(path), properties={"framework": "numpy"})


@track(type="Evaluator")
def evaluate(model: Model, data: Dataset) -> None:
    raise ValueError("auc below the bar")


def record_pipeline(url: str) -> None:
    """Two runs of a small pipeline, on the embedded store at ``url``: train (then a cache
    hit on the second run), an evaluation that fails."""
    metatrail.configure(transport="embedded", store_url=url, spool_path=Path.cwd() / "spool.db", strict=True,
                        relay_interval_ms=20)
    try:
        for name in ("nightly-1", "nightly-2"):
            with run(name, pipeline="ctr"):
                model = train(Dataset(SOURCE), lr=0.1)
                with pytest.raises(ValueError):
                    evaluate(model, Dataset(SOURCE))
        assert metatrail.flush(30)
    finally:
        emitter.shutdown(5)


@pytest.fixture
def recorded(sqlite_url: str) -> str:
    record_pipeline(sqlite_url)
    return sqlite_url


def export(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> list[dict[str, Any]]:
    path = Path.cwd() / f"export-{len(list(Path.cwd().glob('export-*')))}.jsonl"
    assert main(["export", "--format", "openlineage", str(path), "--url", url, "--json", *extra]) == 0
    assert json.loads(capsys.readouterr().out)["file"] == str(path)
    assert path.stat().st_mode & 0o777 == 0o600
    return [json.loads(line) for line in path.read_text().splitlines()]


@requires_shared
def test_exported_events_validate_against_the_spec(recorded: str, capsys: pytest.CaptureFixture[str]) -> None:
    events = export(capsys, recorded)
    assert len(events) == 8  # 4 executions (train, evaluate; twice): START and an end each
    for event in events:
        assert schema_errors(event) == [], event
    by_type: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault((e["job"]["name"], e["eventType"]), []).append(e)
    assert sorted(by_type) == [("ctr.evaluate", "FAIL"), ("ctr.evaluate", "START"), ("ctr.train", "COMPLETE"),
                               ("ctr.train", "START")]
    first, cached = by_type[("ctr.train", "COMPLETE")]
    assert first["run"]["facets"]["metatrail_metrics"]["metrics"]["loss"] == {"value": 1 / 3, "step": 1, "count": 2}
    assert cached["run"]["facets"]["metatrail_cache"]["cachedFrom"] == first["run"]["runId"]
    params = {p["key"]: p["value"] for p in first["run"]["facets"]["executionParameters"]["parameters"]}
    assert params["lr"] == "0.1" and params["epochs"] == "2"
    assert first["run"]["facets"]["parent"]["run"]["runId"] == str(context_id("Run", "nightly-1"))
    assert first["run"]["facets"]["parent"]["job"] == {"namespace": "metatrail", "name": "ctr"}
    (source,) = first["inputs"]
    assert (source["namespace"], source["name"]) == ("gs://mock-bucket", "result.csv")
    (model,) = first["outputs"]
    assert model["facets"]["datasetType"]["datasetType"] == "MODEL" and model["namespace"] == "file"
    failed = by_type[("ctr.evaluate", "FAIL")][0]
    assert failed["run"]["facets"]["errorMessage"]["message"] == "builtins.ValueError: auc below the bar"
    # --since leaves out what was not updated since.
    assert export(capsys, recorded, "--since", "2999-01-01T00:00:00") == []
    assert len(export(capsys, recorded, "--since", "1d")) == 8


def test_export_then_ingest_gives_back_the_runs_datasets_and_edges(
    recorded: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the mapping cannot carry back, and so is not compared: artifact and context
    ids (OpenLineage names runs and datasets, not our nodes: they come back under derived
    ids), artifact types other than Model (back as Dataset) and artifact properties; the
    executions' custom properties, code version and environment; metric samples (only the
    last value per key, in the ``metatrail_metrics`` facet); the pipeline and experiment
    contexts (only the job name's prefix and the parent run); CACHED (back as COMPLETE,
    with ``metatrail_cache``; its START, sent at its creation, gives it a start time). And
    ingest adds, for each output, the dataset's reference
    artifact beside its version."""
    events = export(capsys, recorded)
    path = tmp_path / "back.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    back_url = f"sqlite:///{tmp_path / 'back.db'}"
    assert main(["db", "upgrade", "--url", back_url]) == 0
    capsys.readouterr()
    assert main(["ingest", "--format", "openlineage", str(path), "--url", back_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dead_lettered"] == 0
    with Store.open(recorded) as original, Store.open(back_url) as back:
        sent = original.executions(limit=100).items
        links = original.execution_links([x.id for x in sent])
        artifacts = original.get_many("artifact", sorted({a for lk in links.values() for a, _ in lk.inputs + lk.outputs}))
        got = {x.custom_properties["ol_run_id"]: x for x in back.executions(limit=100).items}
        assert set(got) == {x.id for x in sent}  # the same runs
        for x in sent:
            y = got[x.id]
            assert y.state == ("COMPLETE" if x.state == "CACHED" else x.state)
            assert y.ended_at == x.ended_at
            assert y.started_at == (x.started_at or x.created_at)  # a cache hit never started: START is its record
            assert {k: str(v) for k, v in x.properties.items()} == {k: str(v) for k, v in y.properties.items()}

        def version_of(artifact_id: str) -> str:
            a = artifacts[artifact_id]
            ns, name = naming.split_uri(a.uri or "")
            return str(naming.version_id(ns, name, version=a.id, run_id=""))

        for x in sent:  # the same edges, to the same datasets
            back_links = back.execution_links([got[x.id].id])[got[x.id].id]
            assert {version_of(a) for a, _ in links[x.id].inputs} == {a for a, _ in back_links.inputs}
            versions = {version_of(a) for a, _ in links[x.id].outputs}
            assert versions <= {a for a, _ in back_links.outputs}
            back_artifacts = back.get_many("artifact", [a for a, _ in back_links.outputs])
            assert {back_artifacts[v].uri for v in versions} == {artifacts[a].uri for a, _ in links[x.id].outputs}


def test_imported_executions_are_not_exported_again(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path.cwd() / "ol.jsonl"
    event = {"eventType": "COMPLETE", "eventTime": "2024-01-01T00:00:00Z", "producer": "p", "schemaURL": "s",
             "run": {"runId": "0190f000-0000-7000-8000-00000000000a"}, "job": {"namespace": "n", "name": "j"}}
    path.write_text(json.dumps(event) + "\n")
    assert main(["ingest", "--format", "openlineage", str(path), "--url", sqlite_url]) == 0
    capsys.readouterr()
    assert export(capsys, sqlite_url) == []
    assert main(["export", "--format", "csv", str(path), "--url", sqlite_url]) == 2


@pytest.fixture(params=BACKENDS)
def any_store(request: pytest.FixtureRequest, server_databases: Any, tmp_path: Path) -> Iterator[str]:
    yield backend_url(request.param, server_databases, tmp_path)


@requires_shared
def test_airflow_lineage_and_a_tracked_pipeline_are_one_graph(any_store: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path.cwd() / "airflow.jsonl"
    path.write_bytes(b"\n".join(scenario_payloads("airflow")) + b"\n")
    assert main(["ingest", "--format", "openlineage", str(path), "--url", any_store]) == 0
    record_pipeline(any_store)  # train() reads Dataset("gs://mock-bucket/result.csv")
    capsys.readouterr()
    with Store.open(any_store) as store:
        model = store.artifacts("type = 'Model'", limit=1).items[0]
    assert main(["lineage", model.id, "--up", "--json", "--url", any_store]) == 0
    graph = json.loads(capsys.readouterr().out)
    names = {(n["kind"], n["name"]) for n in graph["nodes"]}
    assert {("execution", "train"), ("execution", "BQ.download"), ("execution", "BQ.copy"),
            ("execution", "BQ.upload")} <= names
    uris = {n["uri"] for n in graph["nodes"]}
    assert {"gs://mock-bucket/result.csv", "bigquery://mock-project.test.upload_cp",
            "bigquery://mock-project.test.upload", "gs://mock-bucket/copied.csv"} <= uris
    assert main(["lineage", model.id, "--up", "--url", any_store]) == 0  # the tree for people
    assert "copied.csv" in capsys.readouterr().out
