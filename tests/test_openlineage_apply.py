"""OpenLineage events through the one apply path, on SQLite, PostgreSQL and MariaDB: the
shared scenarios in any order give one graph; states, parents and input binding do not
depend on arrival order; bad input is dead-lettered with its reason."""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from metatrail.consumer.apply import ApplyReport, RawRecord, apply_records
from metatrail.consumer.apply import records as records_module
from metatrail.consumer.apply.records import record_options
from metatrail.consumer.cli import main
from metatrail.consumer.openlineage import naming
from metatrail.consumer.openlineage.facets import is_truncated
from metatrail.consumer.openlineage.ingest import apply_openlineage
from metatrail.consumer.query.store import Store
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.service.replay import list_dead_letters, replay_dead_letters
from metatrail.schemas.settings import load_settings
from tests.fixtures.backends import reset_store
from tests.fixtures.dump import canonical_dump
from tests.fixtures.openlineage import SCENARIOS, all_payloads, requires_shared, scenario_payloads

T0 = "2024-05-01T10:00:0{}Z"


def apply_ol(engine: Engine, payloads: Sequence[bytes], sizes: Sequence[int] | None = None, **limits: int) -> None:
    """Apply payloads as OpenLineage records, in batches of ``sizes`` (default: one)."""
    sizes = list(sizes) if sizes else [len(payloads)]
    start = 0
    for size in itertools.cycle(sizes):
        if start >= len(payloads):
            return
        part = payloads[start : start + size]
        records = [RawRecord(p, f"test:{start + i}", format="openlineage") for i, p in enumerate(part)]
        report = apply_records(engine, records, **limits)
        assert not report.dead_letters, report.dead_letters
        start += size


def reordered(payload: bytes) -> bytes:
    """The same event serialized differently (keys reversed, spaces): a client's retry."""
    return json.dumps(dict(reversed(list(json.loads(payload).items()))), indent=1).encode()


def shuffled_with_duplicates(payloads: list[bytes], rng: random.Random) -> list[bytes]:
    extra = [reordered(p) if rng.random() < 0.5 else p for p in rng.sample(payloads, len(payloads) // 3)]
    mixed = payloads + extra
    rng.shuffle(mixed)
    return mixed


def run_event(event_type: str | None, second: int, run_id: str, job: str = "daily.load", **extra: Any) -> bytes:
    data: dict[str, Any] = {
        "eventTime": T0.format(second), "producer": "https://example.com/p",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": run_id, "facets": extra.pop("run_facets", {})},
        "job": {"namespace": "etl", "name": job}, **extra,
    }
    if event_type is not None:
        data["eventType"] = event_type
    return json.dumps(data).encode()


def execution(engine: Engine, run_id: str) -> Any:
    with Store(engine) as store:
        return store.get(str(naming.execution_id(run_id)))


def all_orders(engine: Engine, payloads: list[bytes]) -> list[Any]:
    """The dump after each permutation of ``payloads`` (each one event per batch)."""
    dumps = []
    for order in itertools.permutations(payloads):
        reset_store(engine)
        apply_ol(engine, list(order), [1])
        dumps.append(canonical_dump(engine))
    return dumps


# --- the shared scenarios ----------------------------------------------------------------


@requires_shared
def test_scenarios_in_any_order_with_duplicates_and_batches_give_one_graph(engine: Engine) -> None:
    payloads = [p for _, p in all_payloads()]
    apply_ol(engine, payloads, [len(payloads)])
    expected = canonical_dump(engine)
    assert len(expected["mt_executions"]) == 24 and not expected["mt_dead_letters"]
    for seed in (1, 2):
        rng = random.Random(seed)
        reset_store(engine)
        apply_ol(engine, shuffled_with_duplicates(payloads, rng), [rng.randint(1, 12) for _ in range(20)])
        assert canonical_dump(engine) == expected, f"seed {seed}"


#: The datasets each scenario.md lists, as written there. Where scenario.md disagrees
#: with the events it ships, the events win and the difference is named here:
#: * airflow lists ``/files/temp/compose_result.txt``; its events write
#:   ``gs://mock-bucket/compose_result.txt`` (line_31);
#: * simple_run_event lists ``cll_source1`` / ``cll_source2`` (copied from CLL); its event
#:   reads ``test.table.input`` and writes ``test.table.output``;
#: * spark_dataproc_bigquery_shakespare's scenario.md is empty: the datasets of its events.
LISTED = {
    "airflow": ["mock-project.test.upload", "mock-project.test.upload_cp", "gs://mock-bucket/copied.csv",
                "gs://mock-bucket/result.csv", "gs://mock-bucket/uploaded_file.txt",
                "gs://mock-bucket/copy_of_uploaded_file.txt", "gs://mock-bucket/uploaded_data.txt",
                "gs://mock-bucket/copy_of_uploaded_data.txt", "/files/temp/downloaded_file.txt",
                "gs://mock-bucket/compose_result.txt"],
    "CLL": ["cll_source1", "cll_source2", "tbl1"],
    "simple_run_event": ["test.table.input", "test.table.output"],
    "spark_dataproc_bigquery_shakespare": ["bigquery-public-data.samples.shakespeare", "/tmp/outputs/1729097570970"],
}


@requires_shared
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_datasets_a_scenario_lists_are_present(engine: Engine, scenario: str) -> None:
    md = (Path(__file__).resolve().parents[1].parent / "shared/fixtures/openlineage" / scenario / "scenario.md").read_text()
    if scenario in ("airflow", "CLL"):  # the list is scenario.md's, but for the difference named above
        assert [n for n in LISTED[scenario] if n not in md] in ([], ["gs://mock-bucket/compose_result.txt"])
    apply_ol(engine, scenario_payloads(scenario))
    with Store(engine) as store:
        artifacts = store.artifacts(limit=1000).items
    names = set()
    for a in artifacts:
        ol_name = a.properties["ol_name"]
        names |= {ol_name, a.uri, ol_name.rsplit("/", 1)[-1]}
    missing = [name for name in LISTED[scenario] if name not in names]
    assert not missing, f"{scenario}: {missing} not among {sorted(names)}"


@requires_shared
def test_airflow_result_csv_traces_upstream_to_copied_csv(engine: Engine) -> None:
    payloads = scenario_payloads("airflow")
    random.Random(7).shuffle(payloads)  # arrival order does not matter
    apply_ol(engine, payloads, [5])
    with Store(engine) as store:
        graph = store.lineage(str(naming.dataset_id("gs://mock-bucket", "result.csv")), "upstream")
    by_id = {n.id: n for n in graph.nodes}
    path = [("bigquery", "mock-project.test.upload_cp"), ("bigquery", "mock-project.test.upload"),
            ("gs://mock-bucket", "copied.csv")]
    hops = [graph.depths[str(naming.dataset_id(ns, name))] for ns, name in path]
    assert hops == [2, 4, 6]
    assert {n.name for n in graph.nodes if n.kind == "execution"} == {"BQ.download", "BQ.copy", "BQ.upload"}
    assert all(by_id[str(naming.dataset_id(ns, n))].state == "LIVE" for ns, n in path)


# --- order-insensitivity of states, parents and input binding -----------------------------

RUN = "0190f000-0000-7000-8000-000000000001"
PARENT = "0190f000-0000-7000-8000-000000000002"


def test_complete_before_start(engine: Engine) -> None:
    start, complete = run_event("START", 1, RUN), run_event("COMPLETE", 5, RUN)
    dumps = all_orders(engine, [start, complete])
    assert dumps[0] == dumps[1]
    x = execution(engine, RUN)
    assert x.state == "COMPLETE"
    assert (x.started_at.second, x.ended_at.second) == (1, 5)


def test_other_before_start_and_alone(engine: Engine) -> None:
    other = run_event("OTHER", 0, RUN, run_facets={"nominalTime": {"nominalStartTime": T0.format(0)}})
    start, no_type = run_event("START", 1, RUN), run_event(None, 2, RUN)
    apply_ol(engine, [other])
    assert execution(engine, RUN).state == "UNKNOWN"
    dumps = all_orders(engine, [other, start, no_type])
    assert all(d == dumps[0] for d in dumps)
    x = execution(engine, RUN)
    assert x.state == "RUNNING" and x.custom_properties["nominalTime"]["nominalStartTime"] == T0.format(0)


def test_a_fail_after_the_retried_complete_wins_in_any_order(engine: Engine) -> None:
    """The run completed, the client retried its COMPLETE (the same event, serialized
    anew), then reported FAIL: a later terminal report wins by eventTime, so the run is
    FAILED whatever order these arrive in (Marquez keeps whichever came last)."""
    complete = run_event("COMPLETE", 5, RUN)
    fail = run_event("FAIL", 8, RUN, run_facets={"errorMessage": {"message": "late check failed",
                                                                  "programmingLanguage": "PYTHON"}})
    dumps = all_orders(engine, [complete, reordered(complete), fail])
    assert all(d == dumps[0] for d in dumps)
    x = execution(engine, RUN)
    assert (x.state, x.error_message, x.ended_at.second) == ("FAILED", "late check failed", 8)
    # One COMPLETE: its retry was a duplicate (derived from the canonical JSON).
    assert len(dumps[0]["mt_applied_events"]) == len(dumps[0]["mt_applied_events"]) and \
        sum(1 for r in dumps[0]["mt_applied_events"] if r[1] == "execution.recorded") == 2


def test_a_terminal_state_wins_over_later_start_and_running(engine: Engine) -> None:
    events = [run_event("ABORT", 3, RUN), run_event("START", 1, RUN), run_event("RUNNING", 4, RUN)]
    dumps = all_orders(engine, events)
    assert all(d == dumps[0] for d in dumps)
    assert execution(engine, RUN).state == "CANCELED"


def test_a_child_before_its_parent(engine: Engine) -> None:
    parent_facet = {"parent": {"run": {"runId": PARENT}, "job": {"namespace": "etl", "name": "dag"}}}
    child = [run_event("START", 2, RUN, "dag.task", run_facets=parent_facet),
             run_event("COMPLETE", 3, RUN, "dag.task", run_facets=parent_facet)]
    parent = [run_event("START", 1, PARENT, "dag"), run_event("COMPLETE", 4, PARENT, "dag")]
    apply_ol(engine, child)
    with Store(engine) as store:
        placeholder = store.get(str(naming.run_context_id(PARENT)))
        assert placeholder.is_placeholder and placeholder.name is None
    apply_ol(engine, parent)
    after = canonical_dump(engine)
    reset_store(engine)
    apply_ol(engine, parent + child)
    assert canonical_dump(engine) == after
    with Store(engine) as store:
        run_ctx = store.get(str(naming.run_context_id(PARENT)))
        assert not run_ctx.is_placeholder and run_ctx.name == f"dag:{PARENT}"
        tasks = store.executions(f"context.id = '{naming.run_context_id(PARENT)}'").items
        assert {t.name for t in tasks} == {"dag", "dag.task"}
        child_run = store.get(str(naming.run_context_id(RUN)))
        assert str(naming.run_context_id(PARENT)) in child_run.parent_ids


def test_input_binding_does_not_depend_on_arrival_order(engine: Engine) -> None:
    """A reader of a dataset without a version facet is bound to the dataset's reference
    artifact, which every writer also outputs; a reader naming a version is bound to that
    version. Every order of the four events gives the same edges."""
    writer, reader, versioned_writer = RUN, PARENT, "0190f000-0000-7000-8000-000000000003"
    x = {"namespace": "s3://b", "name": "x.parquet"}
    y_v1 = {"namespace": "s3://b", "name": "y.parquet", "facets": {"version": {"datasetVersion": "v1"}}}
    events = [
        run_event("COMPLETE", 1, writer, "write_x", outputs=[x]),
        run_event("COMPLETE", 2, versioned_writer, "write_y", outputs=[y_v1]),
        run_event("START", 3, reader, "read", inputs=[x, y_v1]),
        run_event("COMPLETE", 4, reader, "read", inputs=[x, y_v1]),
    ]
    dumps = all_orders(engine, events)
    assert all(d == dumps[0] for d in dumps)
    edges = {(e[0], e[1], e[2]) for e in dumps[0]["mt_edges"]}
    x_ref, y1 = str(naming.dataset_id("s3://b", "x.parquet")), str(naming.version_id("s3://b", "y.parquet",
                                                                                   version="v1", run_id=""))
    assert (str(naming.execution_id(reader)), "INPUT", x_ref) in edges
    assert (str(naming.execution_id(writer)), "OUTPUT", x_ref) in edges
    assert (str(naming.execution_id(reader)), "INPUT", y1) in edges
    assert (str(naming.execution_id(versioned_writer)), "OUTPUT", y1) in edges


# --- identity, facets, bad input ------------------------------------------------------------


@requires_shared
def test_identity_is_shown_and_filterable(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path.cwd() / "airflow.jsonl"
    path.write_bytes(b"\n".join(scenario_payloads("airflow")) + b"\n")
    assert main(["ingest", "--format", "openlineage", str(path), "--url", store_url, "--json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["dead_lettered"] == 0 and counts["applied"] > 32

    def cli(*argv: str) -> Any:
        assert main([*argv, "--url", store_url, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    found = cli("ls", "executions", "--filter", "custom_properties.ol_job_name = 'BQ.upload'")["items"]
    assert len(found) == 1
    shown = cli("show", found[0]["id"][:12])
    assert shown["custom_properties"]["ol_run_id"] == "01936893-9751-7b3c-8f76-8ac6d0e5f8a3"
    assert shown["custom_properties"]["ol_job_namespace"] == "airflow"
    assert shown["custom_properties"]["jobType"]["integration"] == "AIRFLOW"
    results = cli("ls", "artifacts", "--filter", "properties.ol_name = 'result.csv'")["items"]
    assert {a["version"] is None for a in results} == {True, False}  # the dataset and the run's version
    assert {a["properties"]["ol_namespace"] for a in results} == {"gs://mock-bucket"}
    jobs = cli("ls", "contexts", "--filter", "type = 'Job' AND properties.ol_job_name = 'BQ'")["items"]
    assert len(jobs) == 1
    # Ingesting the file again changes nothing: every event is a duplicate.
    engine = open_engine(store_url)
    try:
        before = canonical_dump(engine)
        assert main(["ingest", "--format", "openlineage", str(path), "--url", store_url, "--json"]) == 0
        again = json.loads(capsys.readouterr().out)
        assert again["applied"] == 0 and again["duplicates"] == counts["applied"] + counts["duplicates"]
        assert canonical_dump(engine) == before
    finally:
        engine.dispose()


@requires_shared
def test_large_facets_are_capped_in_the_store(engine: Engine) -> None:
    apply_ol(engine, scenario_payloads("CLL"), max_facet_bytes=4096)
    with Store(engine) as store:
        tbl = store.executions("custom_properties.ol_job_name LIKE '%default_tbl1'").items[0]
    plan = tbl.custom_properties["spark.logicalPlan"]
    assert is_truncated(plan) and plan["bytes"] > 4096 and plan["head"].startswith("{")
    assert not is_truncated(tbl.custom_properties["spark_properties"])


def test_bad_lines_are_dead_lettered_with_their_reason(store_url: str, engine: Engine,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    good = run_event("COMPLETE", 1, RUN)
    path = Path.cwd() / "mixed.jsonl"
    path.write_bytes(b"\n".join([good, b"{oops", b'{"run": {"runId": "r"}}', b'{"producer": "p"}']) + b"\n")
    assert main(["ingest", "--format", "openlineage", str(path), "--url", store_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dead_lettered"] == 3 and report["applied"] == 3
    reasons = sorted(d["reason"] for d in report["dead_letters"])
    assert reasons[0].startswith("missing job") and "not an OpenLineage event" in reasons[1]
    assert reasons[2].startswith("not valid JSON")
    letters = list_dead_letters(engine)
    assert {dl.kind for dl in letters} == {"openlineage"} and len(letters) == 3
    assert main(["ingest", "--format", "openlineage", str(path), "--url", store_url, "--json"]) == 0
    capsys.readouterr()
    assert len(list_dead_letters(engine)) == 3  # one row per line, however often ingested
    outcomes = replay_dead_letters(engine, load_settings())
    assert all(o.result.startswith("still invalid") for o in outcomes)
    assert main(["ingest", "--format", "bogus", str(path), "--url", store_url]) == 2


def test_the_in_memory_entry_point_reports_per_event(engine: Engine) -> None:
    good = json.loads(run_event("START", 1, RUN))
    report = apply_openlineage(engine, [good, b"[]", run_event("COMPLETE", 2, RUN), {"job": 3}], load_settings())
    assert [o.accepted for o in report.outcomes] == [True, False, True, False]
    assert "JSON object" in (report.outcomes[1].reason or "")
    assert report.to_json()["rejected"] == 2 and report.applied > 0
    assert execution(engine, RUN).state == "COMPLETE"
    again = apply_openlineage(engine, [good], load_settings())
    assert again.applied == 0 and again.duplicates > 0


def test_secrets_do_not_reach_the_store(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    facets = {"environmentVariables": {"environmentVariables": [{"name": "DB_TOKEN", "value": "tok-123"}]}}
    apply_openlineage(engine, [run_event("START", 1, RUN, run_facets=facets)], load_settings())
    x = execution(engine, RUN)
    assert x.custom_properties["environmentVariables"]["environmentVariables"][0]["value"] == "***"
    assert x.custom_properties["redacted"] == ["environmentVariables.environmentVariables.DB_TOKEN"]
    assert "tok-123" not in json.dumps(canonical_dump(engine), default=str)
    monkeypatch.setenv("METATRAIL_REDACT", "off")
    apply_openlineage(engine, [run_event("COMPLETE", 2, RUN, run_facets=facets)], load_settings())
    assert execution(engine, RUN).custom_properties["environmentVariables"]["environmentVariables"][0]["value"] \
        == "tok-123"  # off: recorded as sent (the later event's facet replaces the earlier)


# --- retries -------------------------------------------------------------------------------


@requires_shared
def test_a_retried_batch_redoes_its_transaction_not_its_mapping(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    payloads = [p for _, p in all_payloads()]
    decoded: list[bytes] = []
    original = records_module.decode_openlineage

    def counting(payload: Any, **options: Any) -> Any:
        decoded.append(payload)
        return original(payload, **options)

    monkeypatch.setattr(records_module, "decode_openlineage", counting)
    runs: list[ApplyReport] = []

    def twice(work: Callable[[], ApplyReport]) -> ApplyReport:  # as a retry runs it again
        runs.extend([work(), work()])
        return runs[-1]

    records = [RawRecord(p, f"test:{i}", format="openlineage") for i, p in enumerate(payloads)]
    apply_records(engine, records, attempts=twice)
    assert len(decoded) == len(payloads)
    first, second = runs
    assert first.applied > 0 and second.applied == 0
    assert second.duplicates == first.applied + first.duplicates
    expected = canonical_dump(engine)
    reset_store(engine)
    apply_ol(engine, payloads)
    assert canonical_dump(engine) == expected


@requires_shared
def test_concurrent_appliers_of_the_same_new_nodes_give_one_graph(engine: Engine) -> None:
    """Appliers that race to insert the same new contexts and artifacts (the events of one
    run split across requests, a DAG's datasets): the later one merges into what the other
    inserted or, where neither waited for the other, retries its transaction."""
    payloads = [p for _, p in all_payloads()]
    apply_ol(engine, payloads)
    expected = canonical_dump(engine)
    reset_store(engine)
    options = record_options(load_settings(db_retry_max_wait_s=0.2))

    def applier(seed: int) -> None:
        rng = random.Random(seed)
        mixed = shuffled_with_duplicates(payloads, rng)
        for start in range(0, len(mixed), 9):
            part = mixed[start : start + 9]
            records = [RawRecord(p, f"t{seed}:{start + i}", format="openlineage") for i, p in enumerate(part)]
            assert not apply_records(engine, records, **options).dead_letters

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(applier, range(3)))
    assert canonical_dump(engine) == expected
