"""metatrail executions as OpenLineage RunEvents (spec 2-0-2), built from the store
through the query layer: what ``metatrail export --format openlineage`` writes and
``metatrail forward openlineage`` sends.

Per execution: a START event (at ``started_at``) and, once it ended, a COMPLETE (also for
CACHED), FAIL or ABORT (CANCELED) event (at ``ended_at``). The run is the execution
(``runId`` = its id); the job is ``metatrail`` / ``{pipeline}.{step}`` (the execution's
Pipeline context, then its name, else its type); its Run context is the ``parent`` run
facet. Artifacts are datasets (namespace and name from ``ol_namespace`` / ``ol_name``
when the artifact came from OpenLineage, else from its uri, see ``naming.split_uri``)
with a ``version`` facet (the artifact id: one artifact, one version) and
``datasetType`` (MODEL for a Model, else the artifact type in capitals). Parameters are
``executionParameters``; metrics (last value per key) and the cache origin travel in
the custom run facets ``metatrail_metrics`` and ``metatrail_cache``; a failure's error in
``errorMessage``. Executions that came from OpenLineage (``ol_run_id``) are not
exported again.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from metatrail.consumer.openlineage.naming import split_uri
from metatrail.consumer.query.domain import Artifact, Context, Execution, ExecutionLinks
from metatrail.consumer.query.store import Store
from metatrail.schemas.version import sdk_version

#: The job namespace of exported runs.
NAMESPACE = "metatrail"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACET_SCHEMAS = {
    "parent": "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet",
    "executionParameters": "https://openlineage.io/spec/facets/1-0-0/ExecutionParametersRunFacet.json"
    "#/$defs/ExecutionParametersRunFacet",
    "errorMessage": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
    "jobType": "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
    "version": "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
    "#/$defs/DatasetVersionDatasetFacet",
    "datasetType": "https://openlineage.io/spec/facets/1-0-1/DatasetTypeDatasetFacet.json"
    "#/$defs/DatasetTypeDatasetFacet",
}
#: Where the custom facets' fields are described (the README's OpenLineage section).
CUSTOM_SCHEMA = "urn:metatrail:openlineage-facets:1#/$defs/{name}"
_END_TYPES = {"COMPLETE": "COMPLETE", "CACHED": "COMPLETE", "FAILED": "FAIL", "CANCELED": "ABORT"}
#: Executions exported per page (one page: a handful of queries).
PAGE = 500


def producer() -> str:
    """The ``producer`` / ``_producer`` URI of what metatrail emits."""
    return f"urn:metatrail:{sdk_version()}"


def _facet(name: str, body: dict[str, Any], *, custom: bool = False) -> dict[str, Any]:
    url = CUSTOM_SCHEMA.format(name=name) if custom else _FACET_SCHEMAS[name]
    return {"_producer": producer(), "_schemaURL": url, **body}


def _time(value: datetime) -> str:
    return value.isoformat()


def run_events(store: Store, executions: Sequence[Execution], *, ended_only: bool = False) -> list[dict[str, Any]]:
    """RunEvents of ``executions`` (placeholders and OpenLineage imports skipped), in
    their order: START, then the end event of an ended one. ``ended_only``: only end
    events. Blocking: a few queries per call (plus one per execution for metrics)."""
    chosen = [x for x in executions if not x.is_placeholder and "ol_run_id" not in x.custom_properties]
    links = store.execution_links([x.id for x in chosen])
    artifact_ids = {a for link in links.values() for a, _ in (*link.inputs, *link.outputs)}
    artifacts = store.get_many("artifact", sorted(artifact_ids))
    contexts = store.get_many("context", sorted({c for link in links.values() for c in link.context_ids}))
    out: list[dict[str, Any]] = []
    for x in chosen:
        builder = _RunBuilder(x, links[x.id], artifacts, contexts, store)
        if not ended_only:
            out.append(builder.start())
        end = builder.end()
        if end is not None:
            out.append(end)
    return out


class _RunBuilder:
    def __init__(self, x: Execution, link: ExecutionLinks, artifacts: dict[str, Artifact],
                 contexts: dict[str, Context], store: Store) -> None:
        self.x, self.link, self.artifacts, self.store = x, link, artifacts, store
        mine = [contexts[c] for c in link.context_ids if c in contexts]
        self.pipeline = next((c for c in mine if c.type == "Pipeline"), None)
        runs = [c for c in mine if c.type == "Run"]
        # The innermost run: one that is no other run's parent.
        parents = {p for c in runs for p in c.parent_ids}
        self.run_context = next((c for c in runs if c.id not in parents), runs[0] if runs else None)

    def job(self) -> dict[str, Any]:
        step = self.x.name or self.x.type or "execution"
        name = f"{self.pipeline.name}.{step}" if self.pipeline is not None and self.pipeline.name else step
        job_type = {"processingType": "BATCH", "integration": "METATRAIL", "jobType": "TASK"}
        return {"namespace": NAMESPACE, "name": name, "facets": {"jobType": _facet("jobType", job_type)}}

    def run(self, *, ended: bool) -> dict[str, Any]:
        facets: dict[str, Any] = {}
        if self.run_context is not None:
            parent_job = (self.pipeline.name if self.pipeline is not None else None) or self.run_context.name
            facets["parent"] = _facet("parent", {
                "run": {"runId": self.run_context.id},
                "job": {"namespace": NAMESPACE, "name": parent_job or self.run_context.id},
            })
        if self.x.properties:
            params = [{"key": k, "value": v if isinstance(v, str) else json.dumps(_finite(v))}
                      for k, v in sorted(self.x.properties.items())]
            facets["executionParameters"] = _facet("executionParameters", {"parameters": params})
        if ended:
            self._end_facets(facets)
        return {"runId": self.x.id, "facets": facets}

    def _end_facets(self, facets: dict[str, Any]) -> None:
        metrics: dict[str, Any] = {}
        for point in self.store.metrics(self.x.id):  # ordered by key, step, time: the last wins
            seen = metrics.get(point.key, {"count": 0})
            metrics[point.key] = {"value": _finite(point.value), "step": point.step, "count": seen["count"] + 1}
        if metrics:
            facets["metatrail_metrics"] = _facet("metatrail_metrics", {"metrics": metrics}, custom=True)
        if self.x.state == "CACHED" or self.x.fingerprint:
            cache = {"state": self.x.state, "cachedFrom": self.x.cached_from, "fingerprint": self.x.fingerprint}
            facets["metatrail_cache"] = _facet("metatrail_cache", {k: v for k, v in cache.items() if v}, custom=True)
        if self.x.state == "FAILED":
            message = self.x.error_message or "failed"
            if self.x.error_type:
                message = f"{self.x.error_type}: {message}"
            facets["errorMessage"] = _facet("errorMessage", {"message": message, "programmingLanguage": "PYTHON"})

    def datasets(self, refs: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        out = []
        for artifact_id in dict.fromkeys(a for a, _ in refs):
            a = self.artifacts.get(artifact_id)
            if a is None:
                continue
            ns, name = a.properties.get("ol_namespace"), a.properties.get("ol_name")
            if not (isinstance(ns, str) and isinstance(name, str)):
                ns, name = split_uri(a.uri or f"metatrail://artifact/{a.id}")
            kind = "MODEL" if a.type == "Model" else (a.type or "DATASET").upper()
            out.append({"namespace": ns, "name": name, "facets": {
                "version": _facet("version", {"datasetVersion": a.id}),
                "datasetType": _facet("datasetType", {"datasetType": kind}),
            }})
        return out

    def _event(self, event_type: str, when: datetime, *, ended: bool) -> dict[str, Any]:
        return {
            "eventType": event_type,
            "eventTime": _time(when),
            "producer": producer(),
            "schemaURL": SCHEMA_URL,
            "run": self.run(ended=ended),
            "job": self.job(),
            "inputs": self.datasets(self.link.inputs),
            "outputs": self.datasets(self.link.outputs) if ended else [],
        }

    def start(self) -> dict[str, Any]:
        when = self.x.started_at or self.x.created_at
        assert when is not None  # not a placeholder
        return self._event("START", when, ended=False)

    def end(self) -> dict[str, Any] | None:
        event_type = _END_TYPES.get(self.x.state)
        if event_type is None:
            return None
        when = self.x.ended_at or self.x.updated_at or self.x.created_at
        assert when is not None
        return self._event(event_type, when, ended=True)


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: those travel as the strings metatrail's events use."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return value


def exported_executions(store: Store, since: datetime | None = None) -> Iterator[list[Execution]]:
    """Pages of the executions to export (updated at or after ``since``), oldest first."""
    filter = "custom_properties.ol_run_id IS NULL"
    if since is not None:
        filter += f" AND updated_at >= '{since.isoformat()}'"
    cursor: str | None = None
    while True:
        page = store.executions(filter, order_by="created_at", limit=PAGE, cursor=cursor)
        if page.items:
            yield list(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return


def export_file(store: Store, path: Path, *, since: datetime | None = None) -> int:
    """Write RunEvents, one JSON object per line, to ``path`` (created 0600, replaced if
    it exists). Returns how many events were written."""
    count = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        for page in exported_executions(store, since):
            for event in run_events(store, page):
                handle.write(orjson.dumps(event, option=orjson.OPT_SORT_KEYS) + b"\n")
                count += 1
    return count
