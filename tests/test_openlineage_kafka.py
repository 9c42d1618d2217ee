"""OpenLineage through the real broker and the real client: the client's Kafka transport
into the topic ``consume`` reads, its file transport into ``ingest``, and the forwarder
posting our executions to an HTTP endpoint, committing only what it accepted."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from sqlalchemy import Engine

from metatrail.consumer.cli import main
from metatrail.consumer.openlineage import naming
from metatrail.consumer.openlineage.forward import OpenLineageForwarder, forward_group
from metatrail.consumer.openlineage.target import HttpTarget
from metatrail.consumer.query.store import Store
from metatrail.consumer.service.replay import list_dead_letters
from metatrail.consumer.store.engine import open_engine
from metatrail.schemas.errors import TransportError
from metatrail.schemas.settings import Settings
from tests.fixtures.backends import backend_url
from tests.fixtures.broker import kafka_test_settings
from tests.fixtures.openlineage import SHARED, schema_errors
from tests.fixtures.service import pipeline_workload, publish, publish_events, running_in_thread, running_loop, wait_for

pytestmark = pytest.mark.kafka


def client_events() -> list[Any]:
    """A DAG run with one task, as an integration would emit them with the real client."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import parent_run, schema_dataset
    from openlineage.client.uuid import generate_new_uuid

    dag, task = str(generate_new_uuid()), str(generate_new_uuid())
    parent = parent_run.ParentRunFacet(run=parent_run.Run(runId=dag), job=parent_run.Job(namespace="af", name="dag"))
    schema = schema_dataset.SchemaDatasetFacet(fields=[schema_dataset.SchemaDatasetFacetFields(name="id", type="INT")])
    raw = InputDataset(namespace="gs://bucket", name="raw.csv", facets={"schema": schema})
    table = OutputDataset(namespace="bigquery", name="p.d.clean")

    def event(state: Any, run_id: str, job: str, second: int, **kw: Any) -> Any:
        when = datetime(2024, 5, 1, 10, 0, second, tzinfo=timezone.utc).isoformat()
        facets = {"parent": parent} if run_id == task else {}
        return RunEvent(eventType=state, eventTime=when, run=Run(runId=run_id, facets=facets),
                        job=Job(namespace="af", name=job), producer="https://example.com/af", **kw)

    return [
        event(RunState.COMPLETE, task, "dag.load", 5, inputs=[raw], outputs=[table]),  # before its START
        event(RunState.START, dag, "dag", 1),
        event(RunState.START, task, "dag.load", 2, inputs=[raw]),
        event(RunState.COMPLETE, dag, "dag", 9),
    ]


@pytest.fixture
def pg_url(server_databases: Any, tmp_path: Path) -> str:
    return backend_url("postgresql", server_databases, tmp_path)


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = open_engine(pg_url)
    yield engine
    engine.dispose()


def check_client_run(engine: Engine, events: list[Any]) -> None:
    task, dag = events[0].run.runId, events[1].run.runId
    with Store(engine) as store:
        x = store.get(str(naming.execution_id(task)))
        assert (x.state, x.name) == ("COMPLETE", "dag.load")
        assert str(naming.run_context_id(dag)) in store.execution_links([x.id])[x.id].context_ids
        assert store.get(str(naming.execution_id(dag))).state == "COMPLETE"
        raw = store.get(str(naming.dataset_id("gs://bucket", "raw.csv")))
        assert [(f["name"], f["type"]) for f in raw.properties["schema"]["fields"]] == [("id", "INT")]


def test_the_clients_kafka_transport_into_consume(kafka_bootstrap: str, topic_prefix: str, pg_url: str,
                                                  pg_engine: Engine) -> None:
    """The client's Kafka transport (confluent-kafka) writes to ``<prefix>.openlineage``;
    ``consume`` applies it beside the events topic; a bad message there is dead-lettered
    with its reason and the partition moves on."""
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, pg_url)
    events = client_events()
    with running_loop(settings, pg_engine) as loop:
        assert loop.started.wait(60)
        transport = KafkaTransport(KafkaConfig(config={"bootstrap.servers": kafka_bootstrap},
                                               topic=settings.openlineage_topic, flush=True))
        client = OpenLineageClient(transport=transport)
        for event in events:
            client.emit(event)
        assert transport.close(10)
        publish(kafka_bootstrap, settings.openlineage_topic, [b'{"eventType": "START"}'])

        def done() -> bool:
            with Store(pg_engine) as store:
                found = store.get_many("execution", [str(naming.execution_id(e.run.runId)) for e in events])
            return len(found) == 2 and all(x.state == "COMPLETE" for x in found.values()) and \
                len(list_dead_letters(pg_engine)) == 1

        wait_for(done, 90, what="the client's events applied and the bad one dead-lettered")
    check_client_run(pg_engine, events)
    (letter,) = list_dead_letters(pg_engine)
    assert (letter.kind, letter.topic, letter.reason) == ("openlineage", settings.openlineage_topic, "missing run")


def test_the_clients_file_transport_into_ingest(pg_url: str, pg_engine: Engine, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from openlineage.client import OpenLineageClient
    from openlineage.client.transport.file import FileConfig, FileTransport

    path = tmp_path / "lineage.jsonl"
    client = OpenLineageClient(transport=FileTransport(FileConfig(log_file_path=str(path), append=True)))
    events = client_events()
    for event in events:
        client.emit(event)
    assert len(path.read_text().splitlines()) == 4
    assert main(["ingest", "--format", "openlineage", str(path), "--url", pg_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dead_lettered"] == 0
    check_client_run(pg_engine, events)


class _Target:
    """A local OpenLineage endpoint: records what it accepts; answers 503 while ``down``."""

    def __init__(self) -> None:
        self.accepted: list[dict[str, Any]] = []
        self.refused = 0
        self.down = True
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if target.down:
                    target.refused += 1
                    self.send_response(503)
                elif self.path != "/api/v1/lineage" or self.headers.get("Authorization") != "Bearer s3cret":
                    self.send_response(401)
                else:
                    target.accepted.append(json.loads(body))
                    self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def forward_committed(settings: Settings, bootstrap: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=forward_group(settings), enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(settings.events_topic) or set()
        return sum(consumer.committed(TopicPartition(settings.events_topic, p)) or 0 for p in partitions)
    finally:
        consumer.close(autocommit=False)


def test_the_forwarder_commits_only_what_the_target_accepted(kafka_bootstrap: str, topic_prefix: str, pg_url: str,
                                                             pg_engine: Engine) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, pg_url)
    work = pipeline_workload(runs=2, steps=3, metric_events=1)
    target = _Target()
    store = Store(pg_engine)

    def forwarder() -> OpenLineageForwarder:
        return OpenLineageForwarder(settings, HttpTarget(target.url, api_key="s3cret", timeout_s=5), store,
                                    wait_applied_s=30, max_backoff_s=0.3)

    try:
        with running_loop(settings, pg_engine) as loop:
            assert loop.started.wait(60)
            publish_events(kafka_bootstrap, settings.events_topic, work.events)
            wait_for(lambda: loop.stats.applied >= len(work.events), 60, what="the service applied the events")
            with running_in_thread(forwarder(), "forwarder"):  # the target is down: nothing is committed
                wait_for(lambda: target.refused >= 3, 60, what="attempts against the target")
            assert forward_committed(settings, kafka_bootstrap) == 0 and target.accepted == []
            target.down = False
            with running_in_thread(forwarder(), "forwarder") as second:
                wait_for(lambda: len(target.accepted) >= 12, 90, what="START and COMPLETE of 6 executions")
                wait_for(lambda: forward_committed(settings, kafka_bootstrap) == len(work.events), 30,
                         what="the forwarder's commit")
            assert second.stats.refused == 0
    finally:
        target.close()
    seen = {(e["run"]["runId"], e["eventType"]) for e in target.accepted}
    assert seen == {(x, t) for x in work.executions for t in ("START", "COMPLETE")}
    for event in target.accepted:
        assert event["job"]["namespace"] == "metatrail" and event["run"]["facets"]["parent"]["run"]["runId"]
        if SHARED.is_dir():
            assert schema_errors(event) == []


def test_a_target_must_be_http(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(TransportError, match="http"):
        HttpTarget("ftp://x")
    assert main(["forward", "openlineage", "http://127.0.0.1:9"]) == 1
    assert "METATRAIL_KAFKA_BOOTSTRAP is not set" in capsys.readouterr().err
    monkeypatch.setenv("METATRAIL_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    assert main(["forward", "openlineage", "ftp://x"]) == 1
    assert "must be an http(s) URL" in capsys.readouterr().err
