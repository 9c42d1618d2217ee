"""The API's contract: the committed OpenAPI document matches the app, the docs pages load
their assets from this server only, and property-based fuzzing of every operation from
the document (schemathesis, against a live server) finds no 5xx, no body off its declared
schema and no traceback."""

from __future__ import annotations

import re
from datetime import UTC, datetime
import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from metatrail.consumer.server.openapi import DOCUMENT, current_document, render
from metatrail.schemas.events import ArtifactRecorded, ArtifactRef, ExecutionCompleted, MetricPoint, MetricsLogged
from metatrail.schemas.ids import new_id
from metatrail.schemas.parse import dump_event
from tests.fixtures.server import LiveServer


def test_the_committed_openapi_document_matches_the_app() -> None:
    assert DOCUMENT.read_text() == render(current_document()), (
        "consumer/server/openapi.json is stale: run python -m metatrail.consumer.server.openapi")


def test_response_models_have_the_domain_objects_fields() -> None:
    """The bodies are the domain objects' to_json(): their models must not drift apart."""
    from dataclasses import fields

    from metatrail.consumer.query import domain as d
    from metatrail.consumer.query.detail import NodeRef
    from metatrail.consumer.query.frontier import FrontierNode
    from metatrail.consumer.query.series import MetricSeries, SeriesPoint
    from metatrail.consumer.server import http_models as hm

    pairs = [(d.Artifact, hm.ArtifactOut), (d.Execution, hm.ExecutionOut), (d.Context, hm.ContextOut),
             (d.RunColumn, hm.RunColumnOut), (d.Edge, hm.EdgeOut), (MetricSeries, hm.SeriesOut),
             (SeriesPoint, hm.SeriesPointOut), (NodeRef, hm.NodeRefOut), (FrontierNode, hm.FrontierOut)]
    from metatrail.consumer.query import diffmodel as dm
    from metatrail.consumer.query import impact as im

    pairs += [(dm.ValueChange, hm.ValueChangeOut), (dm.ArtifactPair, hm.ArtifactPairOut),
              (dm.CacheOrigin, hm.CacheOriginOut), (dm.Timing, hm.TimingOut), (dm.StepPair, hm.StepPairOut),
              (dm.SliceDelta, hm.SliceDeltaOut), (dm.MetricDelta, hm.MetricDeltaOut), (dm.Verdict, hm.VerdictOut),
              (dm.Diff, hm.DiffOut), (im.ImpactedArtifact, hm.ImpactedArtifactOut), (im.ImpactGroup, hm.ImpactGroupOut),
              (im.RetriggeredStep, hm.RetriggeredStepOut), (im.Impact, hm.ImpactOut)]
    for domain, model in pairs:
        assert [f.name for f in fields(domain)] == list(model.model_fields), model.__name__


def test_docs_are_served_from_this_server_only(live_server: LiveServer) -> None:
    for page in ("/api/docs", "/api/redoc"):
        html = httpx.get(live_server.url + page).text
        refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html) + re.findall(r"url:\s*'([^']+)'", html)
        assert refs, html
        assert not [r for r in refs if r.startswith(("http:", "https:", "//"))], f"{page} loads from outside: {refs}"
        assert "fonts.googleapis" not in html and "cdn." not in html
        for ref in refs:
            assert httpx.get(live_server.url + ref).status_code == 200, ref
    assert httpx.get(live_server.url + "/api/v1/openapi.json").json()["info"]["title"] == "metatrail"


def no_traceback(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool:
    assert "Traceback" not in response.text and 'File "' not in response.text, response.text[:500]
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return True


CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance, no_traceback]


def test_fuzz_the_api_from_its_openapi_document(sqlite_url: str) -> None:
    server = LiveServer(sqlite_url).start()
    try:
        model, ex = new_id(), new_id()
        events = [ArtifactRecorded(artifact_id=model, type="Model", uri="s3://m"),
                  ExecutionCompleted(execution_id=ex, type="Trainer", outputs=[ArtifactRef(artifact_id=model)]),
                  MetricsLogged(execution_id=ex, points=[MetricPoint(key="loss", value=float("nan"), step=1,
                                                                     timestamp=datetime.now(UTC))])]
        with server.client() as api:
            api.post("/events", content=b"\n".join(dump_event(e) for e in events) + b"\nnot json\n")
        schema = schemathesis.openapi.from_url(server.url + "/api/v1/openapi.json")
        # Creating or revoking tokens would close the open (loopback, no token) server midway.
        schema = schema.exclude(path_regex="^/api/v1/tokens")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        for operation in operations:
            _fuzz(operation)
    finally:
        server.stop()


def _fuzz(operation: schemathesis.APIOperation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        response = case.call(timeout=30)
        where = f"{case.method} {case.formatted_path}"
        assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
        case.validate_response(response, checks=CHECKS)

    check()
