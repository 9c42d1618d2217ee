"""The event contract: round trips, rejection messages, exported JSON Schema, settings."""

from __future__ import annotations

import json
import math
import os
import uuid

import pytest

from metatrail.schemas import (
    ArtifactRef,
    ConfigError,
    EventValidationError,
    ExecutionStarted,
    MetricPoint,
    MetricsLogged,
    ProducerInfo,
    PropertyValue,
    dump_event,
    load_settings,
    parse_event,
    typed,
)
from metatrail.schemas.events import EVENT_MODELS
from metatrail.schemas.export import JSON_DIR, rendered_schemas
from metatrail.schemas.ids import context_id, new_id, trigger_id
from metatrail.schemas.settings import known_env_vars


def _started() -> ExecutionStarted:
    return ExecutionStarted(
        execution_id=new_id(),
        type="Trainer",
        parameters=typed({"lr": 0.1, "epochs": 3, "deep": True, "layers": [64, 32], "name": "x"}),
        inputs=[ArtifactRef(artifact_id=new_id(), role="examples")],
    )


def test_round_trip_keeps_every_field_and_property_type() -> None:
    event = _started()
    again = parse_event(dump_event(event))
    assert again == event
    assert [again.parameters[k].type for k in ("lr", "epochs", "deep", "layers", "name")] == [
        "float", "int", "bool", "json", "string",
    ]


def test_non_finite_metric_values_survive_the_wire() -> None:
    event = MetricsLogged(
        execution_id=new_id(),
        points=[
            MetricPoint(key="loss", value=float("nan"), timestamp=_started().occurred_at),
            MetricPoint(key="loss", value=float("-inf"), step=2, timestamp=_started().occurred_at),
        ],
    )
    again = parse_event(dump_event(event))
    assert math.isnan(again.points[0].value) and again.points[1].value == float("-inf")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\x00\xffgarbage", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"kind": "execution.started"}', "missing field 'schema_version'"),
        (b'{"schema_version": "7", "kind": "execution.started"}', "unknown schema_version '7'"),
        (b'{"schema_version": "1", "kind": "model.trained"}', "unknown kind 'model.trained'"),
        (b'{"schema_version": "1"}', "missing field 'kind'"),
    ],
)
def test_rejections_name_what_was_wrong(raw: bytes, fragment: str) -> None:
    with pytest.raises(EventValidationError, match=fragment):
        parse_event(raw)


def test_wrong_field_type_names_the_field() -> None:
    data = json.loads(dump_event(_started()))
    data["inputs"][0]["artifact_id"] = "not-a-uuid"
    with pytest.raises(EventValidationError, match=r"inputs\.0\.artifact_id"):
        parse_event(json.dumps(data))


def test_oversized_event_is_rejected_before_parsing() -> None:
    with pytest.raises(EventValidationError, match="larger than the limit"):
        parse_event(b"{" + b" " * 2000 + b"}", max_bytes=1000)


def test_property_value_rejects_a_value_of_the_wrong_type() -> None:
    with pytest.raises(ValueError, match="not a valid 'int'"):
        PropertyValue(type="int", value="3")
    assert PropertyValue.of(2**70).type == "string"  # beyond int64: kept, as text


def test_exported_json_schema_matches_the_models() -> None:
    on_disk = {p.name: p.read_text() for p in JSON_DIR.glob("*.json")}
    assert on_disk == rendered_schemas(), "run `python -m metatrail.schemas.export` and commit schemas/json/"
    assert {f"{k}.schema.json" for k in EVENT_MODELS} <= set(on_disk)


def test_derived_ids_are_stable_and_new_ids_are_time_ordered() -> None:
    assert context_id("Run", "r1") == context_id("Run", "r1") != context_id("Run", "r2")
    step = uuid.uuid4()
    a, b = new_id(), new_id()
    assert trigger_id(step, {"x": a, "y": b}) == trigger_id(step, {"y": b, "x": a})
    ids = [new_id() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == 1000 and ids[0].version == 7


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METATRAIL_KAFKA_PARTITIONS", "many")
    with pytest.raises(ConfigError, match="METATRAIL_KAFKA_PARTITIONS"):
        load_settings()


def test_kafka_transport_without_bootstrap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METATRAIL_TRANSPORT", "kafka")
    with pytest.raises(ConfigError, match="METATRAIL_KAFKA_BOOTSTRAP"):
        load_settings()


def test_defaults_are_the_embedded_zero_configuration() -> None:
    settings = load_settings()
    assert settings.transport == "embedded"
    assert settings.store_url == "sqlite:///.metatrail/metadata.db"
    assert "METATRAIL_STORE_URL" in known_env_vars()


def test_a_forked_child_reports_its_own_pid() -> None:
    """The producer of an event is the process that made it, in a forked child too
    (``current`` is cached until a fork)."""
    assert ProducerInfo.current().pid == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, str(ProducerInfo.current().pid).encode())
        os._exit(0)
    os.close(write)
    reported = int(os.read(read, 32))
    os.waitpid(child, 0)
    os.close(read)
    assert reported == child != os.getpid()
    assert ProducerInfo.current().pid == os.getpid()
