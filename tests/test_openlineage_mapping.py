"""The OpenLineage mapping on its own (no store): ids, states, facets, bad input."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import orjson
import pytest

from metatrail.consumer.openlineage import naming
from metatrail.consumer.openlineage.facets import is_truncated
from metatrail.consumer.openlineage.mapping import decode_openlineage
from metatrail.consumer.openlineage.parsed import ParsedJson
from metatrail.schemas.errors import EventValidationError
from metatrail.schemas.events import ArtifactRecorded, ContextUpserted, ExecutionRecorded
from metatrail.schemas.parse import dump_event, parse_event
from tests.fixtures.openlineage import all_payloads, requires_shared

RUN = "0192963f-929e-731b-a075-9bb14bf41d38"
PARENT = "0192963f-0000-7000-8000-000000000001"


def event(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "eventType": "COMPLETE",
        "eventTime": "2024-10-16T16:53:51.884Z",
        "producer": "https://example.com/producer",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": RUN, "facets": {}},
        "job": {"namespace": "etl", "name": "daily.load", "facets": {}},
        "inputs": [{"namespace": "gs://bucket", "name": "raw/a.csv", "facets": {}}],
        "outputs": [{"namespace": "bigquery", "name": "p.d.table", "facets": {}}],
    }
    base.update(changes)
    return base


def execution_of(events: list[Any]) -> ExecutionRecorded:
    (found,) = [e for e in events if isinstance(e, ExecutionRecorded)]
    return found


@requires_shared
def test_every_shared_event_maps_to_events_that_pass_our_validation() -> None:
    for name, payload in all_payloads():
        events = decode_openlineage(payload)
        assert events, name
        for e in events:  # what the mapping builds is a valid event of our contract
            assert parse_event(dump_event(e)) == e


def _edge_cases() -> list[dict[str, Any]]:
    """Events whose mapping takes every branch the event builders have (``build``)."""
    parent = {"run": {"runId": PARENT}, "job": {"namespace": "airflow", "name": "dag " * 100}}
    error = {"message": "boom", "programmingLanguage": "PYTHON", "stackTrace": "at x"}
    model = {"namespace": "s3://m", "name": "model" * 500,
             "facets": {"datasetType": {"datasetType": "MODEL"},
                        "version": {"datasetVersion": "v" * 300}, "storage": {"api_key": "k3y"}}}
    return [
        event(),
        event(eventType="START", eventTime="2024-10-16T16:53:51",
              job={"namespace": "etl", "name": "9 x/y" * 90}),
        event(eventType="FAIL", run={"runId": "8f0e2a9c-3f0e-4d3b-9a51-0a2b3c4d5e6f",
                                     "facets": {"errorMessage": error, "parent": parent}}),
        event(eventType="OTHER", eventTime="2024-10-16T18:53:51+02:00", run={"runId": "run_id"},
              outputs=[model], inputs=[model, {"namespace": "file", "name": "/" + "d/" * 1200}]),
        event(run={"runId": RUN, "facets": {"executionParameters": {"parameters": [
            {"key": "token", "value": "t"}, {"key": "n", "value": 3},
            {"key": "m", "value": {"a": [1]}}]}}}),
        {"eventTime": "2024-01-01T00:00:00Z",
         "dataset": {"namespace": "bigquery", "name": "p.d.t"}},
        {"eventTime": "2024-01-01T00:00:00Z", "inputs": [model],
         "job": {"namespace": "etl", "name": "j", "facets": {"sql": {"q": 1}}}},
    ]


@pytest.mark.parametrize("data", _edge_cases())
def test_mapped_events_equal_their_validated_twins(data: dict[str, Any]) -> None:
    """The mapping builds events without pydantic's validation (``build``): each must be
    the very event validation makes of its fields."""
    for e in decode_openlineage(data):
        twin = type(e).model_validate(e.model_dump())
        assert twin == e and twin.model_dump_json() == e.model_dump_json()
        assert parse_event(dump_event(e)) == e


def test_event_ids_come_from_the_canonical_json() -> None:
    data = event()
    spaced = json.dumps(data, indent=3).encode()
    reordered = json.dumps(dict(reversed(list(data.items())))).encode()
    ids = [[e.event_id for e in decode_openlineage(p)] for p in (json.dumps(data).encode(), spaced, reordered)]
    assert ids[0] == ids[1] == ids[2]
    other = decode_openlineage(event(eventTime="2024-10-16T16:53:52Z"))
    shared = {e.event_id for e in other} & set(ids[0])
    # Only the job's and the run's descriptions, the same in every event of a UUIDv7 run.
    assert {e.kind for e in other if e.event_id in shared} == {"context.upserted"} and len(shared) == 2
    when = naming.run_id_time(RUN)
    assert when is not None and all(e.occurred_at == when for e in other if e.event_id in shared)
    v4 = "8f0e2a9c-3f0e-4d3b-9a51-0a2b3c4d5e6f"
    first, second = (decode_openlineage(event(eventTime=t, run={"runId": v4}))
                     for t in ("2024-10-16T16:53:51Z", "2024-10-16T16:53:52Z"))
    assert not {e.event_id for e in first} & {e.event_id for e in second}  # another id: described per event
    assert naming.run_id_time(v4) is None and naming.run_id_time("run_id") is None


@pytest.mark.parametrize(("event_type", "state"), [
    ("START", "RUNNING"), ("RUNNING", "RUNNING"), ("COMPLETE", "COMPLETE"), ("FAIL", "FAILED"),
    ("ABORT", "CANCELED"), ("OTHER", "UNKNOWN"), (None, "UNKNOWN"),
])
def test_event_types_map_to_states(event_type: str | None, state: str) -> None:
    data = event(eventType=event_type)
    if event_type is None:
        del data["eventType"]  # a missing eventType is accepted
    x = execution_of(decode_openlineage(data))
    assert x.state == state
    assert x.execution_id == naming.execution_id(RUN)
    assert x.custom_properties["ol_run_id"].value == RUN
    assert x.custom_properties["ol_job_namespace"].value == "etl"
    assert x.custom_properties["ol_job_name"].value == "daily.load"
    assert (x.started_at is not None) == (event_type == "START")


def test_fail_carries_the_error_message() -> None:
    facet = {"message": "Table not found", "programmingLanguage": "JAVA", "stackTrace": "at X"}
    x = execution_of(decode_openlineage(event(eventType="FAIL", run={"runId": RUN, "facets": {"errorMessage": facet}})))
    assert x.error is not None
    assert (x.error.type, x.error.message, x.error.traceback) == ("JAVA error", "Table not found", "at X")


def test_outputs_are_a_version_per_run_and_the_dataset_inputs_the_dataset_or_their_version() -> None:
    versioned_input = {"namespace": "s3://b", "name": "k", "facets": {"version": {"datasetVersion": "v7"}}}
    data = event(inputs=[event()["inputs"][0], versioned_input])
    x = execution_of(decode_openlineage(data))
    assert [r.artifact_id for r in x.inputs] == [
        naming.dataset_id("gs://bucket", "raw/a.csv"),
        naming.version_id("s3://b", "k", version="v7", run_id="ignored"),
    ]
    assert [r.artifact_id for r in x.outputs] == [
        naming.version_id("bigquery", "p.d.table", version=None, run_id=RUN),
        naming.dataset_id("bigquery", "p.d.table"),
    ]
    # The reference artifact is the SDK's ``Dataset(uri)`` read by uri.
    from metatrail import Dataset

    assert Dataset("gs://bucket/raw/a.csv").resolve_id(as_output=False) == naming.dataset_id("gs://bucket", "raw/a.csv")


def test_parent_and_root_make_contexts_and_the_job_hierarchy() -> None:
    root = "0192963f-0000-7000-8000-0000000000ff"
    parent = {"run": {"runId": PARENT}, "job": {"namespace": "airflow", "name": "dag"},
              "root": {"run": {"runId": root}, "job": {"namespace": "airflow", "name": "root_dag"}}}
    events = decode_openlineage(event(run={"runId": RUN, "facets": {"parent": parent}}))
    x = execution_of(events)
    assert x.context_ids == [naming.job_context_id("etl", "daily.load"), naming.run_context_id(RUN),
                             naming.run_context_id(PARENT), naming.run_context_id(root)]
    contexts = {e.context_id: e for e in events if isinstance(e, ContextUpserted)}
    run_ctx = contexts[naming.run_context_id(RUN)]
    assert run_ctx.parent_ids == [naming.job_context_id("etl", "daily.load"), naming.run_context_id(PARENT),
                                  naming.run_context_id(root)]
    job_ctx = contexts[naming.job_context_id("etl", "daily.load")]
    assert job_ctx.parent_ids == [naming.job_context_id("airflow", "dag")]
    assert x.run_id == naming.run_context_id(root)  # the Kafka key of the whole tree


def test_facets_become_properties_and_parameters() -> None:
    run_facets = {
        "executionParameters": {"parameters": [{"key": "lr", "value": "0.1"}, {"key": "epochs", "value": 3}]},
        "processing_engine": {"name": "spark", "version": "3.5"},
        "airflow": {"task": "run"},
    }
    job_facets = {"jobType": {"jobType": "TASK"}, "airflow": {"dag": "d"}, "sourceCode": {"language": "python"}}
    dataset_facets = {"schema": {"fields": [{"name": "a"}]}, "datasetType": {"datasetType": "MODEL"}}
    data = event(run={"runId": RUN, "facets": run_facets}, job={"namespace": "etl", "name": "j", "facets": job_facets},
                 outputs=[{"namespace": "s3://m", "name": "model.bin", "facets": dataset_facets,
                           "outputFacets": {"outputStatistics": {"rowCount": 5}}}])
    events = decode_openlineage(data)
    x = execution_of(events)
    assert {k: v.value for k, v in x.parameters.items()} == {"lr": "0.1", "epochs": 3}
    props = x.custom_properties
    assert props["processing_engine"].value == {"name": "spark", "version": "3.5"}
    assert props["jobType"].value == {"jobType": "TASK"}
    assert props["airflow"].value == {"task": "run"}  # the run facet keeps the name
    assert props["job.airflow"].value == {"dag": "d"}
    assert "executionParameters" not in props
    artifacts = [e for e in events if isinstance(e, ArtifactRecorded) and e.uri.startswith("s3://m")]
    assert len(artifacts) == 2 and {a.type for a in artifacts} == {"Model"}
    for a in artifacts:
        assert a.properties["outputStatistics"].value == {"rowCount": 5}
        assert a.properties["datasetType"].value == {"datasetType": "MODEL"}
        assert (a.properties["ol_namespace"].value, a.properties["ol_name"].value) == ("s3://m", "model.bin")
        assert a.uri == "s3://m/model.bin"
    # The dataset's own facets describe the dataset (its reference artifact), not each version.
    dataset, version = sorted(artifacts, key=lambda a: a.version is not None)
    assert dataset.properties["schema"].value == {"fields": [{"name": "a"}]}
    assert "schema" not in version.properties and version.version == RUN


def test_large_facets_are_capped_with_a_marker_and_deleted_facets_become_null() -> None:
    plan = {"plan": "x" * 200_000}
    data = event(run={"runId": RUN, "facets": {"spark.logicalPlan": plan, "small": {"a": 1},
                                                "gone": {"_deleted": True}}})
    x = execution_of(decode_openlineage(data, max_facet_bytes=64 * 1024))
    capped = x.custom_properties["spark.logicalPlan"].value
    assert is_truncated(capped) and capped["bytes"] > 200_000 and len(capped["head"]) == 1024
    assert capped["sha256"] == __import__("hashlib").sha256(naming.canonical_json(plan)).hexdigest()
    assert x.custom_properties["small"].value == {"a": 1}
    assert x.custom_properties["gone"].value is None


@pytest.mark.parametrize("version", ["1-0-0", "1-0-5", "1-1-0", "2-0-0", "2-0-2", "9-9-9"])
def test_any_schema_url_is_accepted(version: str) -> None:
    url = f"https://openlineage.io/spec/{version}/OpenLineage.json#/definitions/RunEvent"
    assert execution_of(decode_openlineage(event(schemaURL=url))).state == "COMPLETE"


def _without(path: str) -> dict[str, Any]:
    data = event()
    *head, last = path.split(".")
    node = data
    for key in head:
        node = node[key]
    del node[last]
    return data


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "not valid JSON"),
    (b'{"eventTime": NaN}', "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"kind": "execution.started", "schema_version": "1"}', "not an OpenLineage event"),
    (_without("run.runId"), "missing run.runId"),
    (_without("job"), "missing job"),
    (_without("job.name"), "missing job.name"),
    (_without("eventTime"), "missing eventTime"),
    (event(eventTime="yesterday"), "not an ISO 8601 date-time"),
    (event(eventType="FINISHED"), "unknown eventType"),
    (event(run={"runId": ""}), "run.runId must be a non-empty string"),
    (event(inputs={"namespace": "x"}), "inputs must be a list"),
    (event(outputs=[{"namespace": "x"}]), "missing outputs[0].name"),
    (event(run={"runId": RUN, "facets": []}), "run.facets must be an object"),
])
def test_bad_input_is_refused_with_a_reason(payload: Any, reason: str) -> None:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    with pytest.raises(EventValidationError, match=re.escape(reason)):
        decode_openlineage(raw)


def test_too_large_an_event_is_refused() -> None:
    with pytest.raises(EventValidationError, match="larger than the limit"):
        decode_openlineage(json.dumps(event()).encode(), max_bytes=100)
    with pytest.raises(EventValidationError, match="larger than the limit"):  # parsed already: still measured
        decode_openlineage(ParsedJson.of(event()), max_bytes=100)


@requires_shared
def test_an_event_parsed_already_maps_as_its_bytes_do() -> None:
    for name, payload in all_payloads():
        parsed = ParsedJson.of(orjson.loads(payload))
        # what a dead letter keeps, and what names the event: its canonical JSON
        assert bytes(parsed) == orjson.dumps(orjson.loads(payload), option=orjson.OPT_SORT_KEYS), name
        assert decode_openlineage(parsed) == decode_openlineage(bytes(parsed)) == decode_openlineage(payload), name


def test_the_mapping_reads_the_value_a_parsed_event_carries_not_its_bytes() -> None:
    parsed = ParsedJson.of(event())
    parsed.value = event(eventType="FAIL")  # a carrier whose bytes say otherwise: the value is what counts
    assert execution_of(decode_openlineage(parsed)).state == "FAILED"
    assert execution_of(decode_openlineage(bytes(parsed))).state == "COMPLETE"
    with pytest.raises(EventValidationError, match="must be a JSON object"):
        decode_openlineage(ParsedJson.of([event()]))


def test_static_dataset_and_job_events_describe_nodes_without_edges() -> None:
    dataset = {"eventTime": "2024-01-01T00:00:00Z", "producer": "p", "schemaURL": "s",
               "dataset": {"namespace": "bigquery", "name": "p.d.t", "facets": {"schema": {"fields": []}}}}
    (artifact,) = decode_openlineage(dataset)
    assert isinstance(artifact, ArtifactRecorded) and artifact.artifact_id == naming.dataset_id("bigquery", "p.d.t")
    job = {"eventTime": "2024-01-01T00:00:00Z", "producer": "p", "schemaURL": "s",
           "job": {"namespace": "etl", "name": "j"}, "inputs": [dataset["dataset"]]}
    kinds = [e.kind for e in decode_openlineage(job)]
    assert kinds == ["context.upserted", "artifact.recorded"]


def test_names_fit_the_store() -> None:
    assert naming.type_name("dbt job/model orders") == "dbt_job_model_orders"
    assert naming.type_name("1st") == "_1st"
    long = "a" * 300
    assert len(naming.type_name(long)) == 128 and naming.type_name(long) != naming.type_name(long + "b")
    assert naming.dataset_uri("file", "/tmp/x") == "/tmp/x"
    assert naming.dataset_uri("gs://b/", "/a.csv") == "gs://b/a.csv"
    assert naming.split_uri("file:///tmp/x") == ("file", "/tmp/x")
    for ns, name in (("gs://b", "a/b.csv"), ("file", "/tmp/x"), ("file", "rel/x"), ("bigquery", "p.d.t")):
        assert naming.split_uri(naming.dataset_uri(ns, name)) == (ns, name)
    data = copy.deepcopy(event(job={"namespace": "etl", "name": "x" * 400}))
    x = execution_of(decode_openlineage(data))
    assert x.name is not None and len(x.name) == 255 and x.custom_properties["ol_job_name"].value == "x" * 400


def test_secrets_are_stored_as_stars_and_listed() -> None:
    env = {"environmentVariables": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "abc123"},
                                    {"name": "HOME", "value": "/root"}]}
    spark = {"properties": {"spark.hadoop.fs.s3a.secret.key": "s3key", "spark.app.name": "app"}}
    params = {"parameters": [{"key": "db_password", "value": "hunter2"}, {"key": "lr", "value": "0.1"}]}
    data = event(run={"runId": RUN, "facets": {"environmentVariables": env, "spark_properties": spark,
                                                "executionParameters": params}},
                 inputs=[{"namespace": "s3://m", "name": "x", "facets": {"storage": {"api_key": "k3y"}}}])
    events = decode_openlineage(data)
    written = b"".join(dump_event(e) for e in events)
    for secret in (b"abc123", b"s3key", b"hunter2", b"k3y"):
        assert secret not in written
    x = execution_of(events)
    assert x.parameters["db_password"].value == "***" and x.parameters["lr"].value == "0.1"
    assert x.custom_properties["environmentVariables"].value["environmentVariables"][1]["value"] == "/root"
    assert x.custom_properties["spark_properties"].value["properties"]["spark.app.name"] == "app"
    assert x.custom_properties["redacted"].value == [
        "db_password", "environmentVariables.environmentVariables.AWS_SECRET_ACCESS_KEY",
        "spark_properties.properties.spark.hadoop.fs.s3a.secret.key"]
    (dataset,) = [e for e in events if isinstance(e, ArtifactRecorded) and e.uri == "s3://m/x"]
    assert dataset.properties["storage"].value == {"api_key": "***"}
    assert dataset.properties["redacted"].value == ["storage.api_key"]
    for e in events:  # still valid events of our contract
        assert parse_event(dump_event(e)) == e
    clear = execution_of(decode_openlineage(data, redact_words=()))  # METATRAIL_REDACT=off
    assert clear.parameters["db_password"].value == "hunter2" and "redacted" not in clear.custom_properties
