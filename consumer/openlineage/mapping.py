"""One OpenLineage event -> metatrail events. A pure function of the event's content:
the same event (however often, in whatever order, split into whatever batches) gives
the same events with the same ids, which apply then merges order-insensitively.

RunEvent (spec 1-0-x to 2-0-2; ``schemaURL`` is not checked):

* the run -> an ``execution.recorded`` (id from ``runId``, kept as ``ol_run_id``) of type
  ``type_name(job.name)``, named after the job; state START/RUNNING -> RUNNING, COMPLETE
  -> COMPLETE, FAIL -> FAILED (``errorMessage`` -> its error), ABORT -> CANCELED, OTHER or
  no eventType -> UNKNOWN, which ranks lowest and so changes nothing once a state is known;
* the job -> a ``Job`` context (``ol_job_namespace``, ``ol_job_name``); the run -> a ``Run``
  context as well, that its child runs attach to: the ``parent`` run facet (and its
  ``root``) make the parent's and root's run contexts parents of it and contexts of the
  execution, placeholders until the parent's own events arrive; the parent's job context
  becomes a parent of the job context. With a UUIDv7 run id (what OpenLineage clients
  make) the two contexts are described at the time the id carries, once per run; with
  another run id, by every event at its eventTime;
* inputs and outputs -> artifacts with INPUT / OUTPUT edges (see ``naming`` for ids): an
  output is one artifact per producing run (per ``version`` facet when there is one) AND
  the dataset's reference artifact; an input with a ``version`` facet is that version's
  artifact, one without is the dataset's reference artifact;
* dataset facets go on the artifact the edge names, except that a produced version keeps
  only its output facets, ``version``, ``datasetType`` and ``lifecycleStateChange`` (the
  rest describe the dataset, on its reference artifact: stored once, not twice);
* facets -> properties (``facets``): ``executionParameters`` -> the execution's
  parameters; other run facets and the job facets -> its custom properties (a job facet
  whose name a run facet of the same event has is stored as ``job.<name>``); dataset,
  input and output facets -> the artifact's properties, beside ``ol_namespace`` and
  ``ol_name``; ``datasetType`` MODEL makes the artifact a ``Model``;
* secrets: values under names with a ``METATRAIL_REDACT`` word, in parameters and facets,
  are stored as ``"***"`` and listed in the node's ``redacted`` property (``secrets``).

DatasetEvent -> the dataset's artifact; JobEvent -> the job context and its datasets'
artifacts (no edges: there is no run). Every event id is derived from the event's
canonical JSON (``naming.event_digest``), so a retried event is a duplicate.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

from metatrail.consumer.openlineage import naming
from metatrail.consumer.openlineage.build import built
from metatrail.consumer.openlineage.datasets import (
    VERSION_FACETS,
    Datasets,
    datasets_of,
    map_dataset_event,
    map_job_event,
    version_of,
)
from metatrail.consumer.openlineage.facets import (
    DEFAULT_MAX_FACET_BYTES,
    facet_properties,
    redacted_flag,
)
from metatrail.consumer.openlineage.fields import event_time, object_at, string_value, text
from metatrail.consumer.openlineage.parsed import known_canonical, load_json
from metatrail.consumer.openlineage.secrets import MARK, Redactor, default_words
from metatrail.schemas.errors import EventValidationError
from metatrail.schemas.events import ArtifactRef, ContextUpserted, ErrorInfo, Event, ExecutionRecorded
from metatrail.schemas.values import PropertyValue, typed

#: Largest OpenLineage event accepted by default (facets are capped after parsing).
DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
#: OpenLineage eventType -> execution state. OTHER and a missing eventType say nothing
#: about the state: UNKNOWN ranks below every other state, so it never replaces one.
STATES = {
    "START": "RUNNING",
    "RUNNING": "RUNNING",
    "COMPLETE": "COMPLETE",
    "FAIL": "FAILED",
    "ABORT": "CANCELED",
    "OTHER": "UNKNOWN",
}
#: Run facets that become structure rather than custom properties.
_STRUCTURAL_RUN_FACETS = frozenset({"executionParameters"})


def decode_openlineage(
    payload: bytes | str | dict[str, Any],
    *,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    max_facet_bytes: int = DEFAULT_MAX_FACET_BYTES,
    redact_words: tuple[str, ...] | None = None,
) -> list[Event]:
    """Validate one OpenLineage event and map it (see module doc). ``redact_words``: the
    ``METATRAIL_REDACT`` words (``None``: its default; empty: redaction off).

    Raises ``EventValidationError`` naming what is wrong: too large, not JSON, not an
    object, not an OpenLineage event, a missing ``runId`` / ``job`` / dataset
    namespace or name, a bad ``eventTime`` or ``eventType``. Never raises anything else.
    """
    data = _load(payload, max_bytes)
    try:
        return map_event(data, max_facet_bytes=max_facet_bytes, redactor=redactor_for(redact_words),
                         canonical=known_canonical(payload))
    except EventValidationError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:  # pydantic's, or a facet JSON cannot hold
        raise EventValidationError(f"invalid OpenLineage event: {exc}") from exc


def _load(payload: bytes | str | dict[str, Any], max_bytes: int) -> dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    size = len(payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload)
    if size > max_bytes:
        raise EventValidationError(f"OpenLineage event is {size} bytes, larger than the limit of {max_bytes}")
    try:
        data = load_json(payload)  # bytes the caller parsed already (an HTTP batch's events) are not parsed again
    except orjson.JSONDecodeError as exc:
        raise EventValidationError(f"not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise EventValidationError(f"an OpenLineage event must be a JSON object, got {type(data).__name__}")
    return data


@lru_cache(maxsize=16)
def redactor_for(words: tuple[str, ...] | None) -> Redactor:
    """One redactor per set of words (it remembers the names it has judged)."""
    return Redactor(default_words() if words is None else words)


def map_event(data: dict[str, Any], *, max_facet_bytes: int = DEFAULT_MAX_FACET_BYTES,
              redactor: Redactor | None = None, canonical: bytes | None = None) -> list[Event]:
    """Map an already-parsed OpenLineage event (``canonical``: its canonical JSON, when
    known). Raises ``EventValidationError``."""
    redactor = redactor if redactor is not None else redactor_for(None)
    if "run" in data or "eventType" in data:
        return _RunEventMapper(data, max_facet_bytes, redactor, canonical).events()
    if "dataset" in data:
        return map_dataset_event(data, max_facet_bytes, redactor, canonical)
    if "job" in data:
        return map_job_event(data, max_facet_bytes, redactor, canonical)
    raise EventValidationError("not an OpenLineage event: it has no 'run', 'job' or 'dataset'")


def _parent_ids(facet: Any) -> tuple[str | None, tuple[str, str] | None, str | None]:
    """(parent runId, parent job (namespace, name), root runId) of a ``parent`` run
    facet; a malformed part is left out (the facet is still kept as a property)."""
    if not isinstance(facet, dict):
        return None, None, None
    run, job, root = facet.get("run"), facet.get("job"), facet.get("root")
    parent_run = run.get("runId") if isinstance(run, dict) else None
    parent_job = None
    if isinstance(job, dict) and isinstance(job.get("namespace"), str) and isinstance(job.get("name"), str):
        parent_job = (job["namespace"], job["name"])
    root_run = None
    if isinstance(root, dict) and isinstance(root.get("run"), dict):
        root_run = root["run"].get("runId")
    return (
        parent_run if isinstance(parent_run, str) and parent_run else None,
        parent_job,
        root_run if isinstance(root_run, str) and root_run else None,
    )


class _RunEventMapper:
    """The mapping of one RunEvent (see module doc)."""

    def __init__(self, data: dict[str, Any], max_facet_bytes: int, redactor: Redactor,
                 canonical: bytes | None = None) -> None:
        self.data = data
        run = data.get("run")
        if not isinstance(run, dict):
            raise EventValidationError("missing run" if run is None else "run must be an object")
        self.run_id = text(run, "runId", "run")
        job = data.get("job")
        if not isinstance(job, dict):
            raise EventValidationError("missing job" if job is None else "job must be an object")
        self.job_namespace = text(job, "namespace", "job")
        self.job_name = text(job, "name", "job")
        self.run_facets = object_at(run, "facets", "run")
        self.job_facets = object_at(job, "facets", "job")
        event_type = data.get("eventType")
        if event_type is not None and event_type not in STATES:
            raise EventValidationError(f"unknown eventType {str(event_type)[:32]!r} (known: {', '.join(STATES)})")
        self.state = STATES[event_type] if event_type is not None else "UNKNOWN"
        self.event_type = event_type
        self.when = event_time(data)
        self.inputs = datasets_of(data, "inputs")
        self.outputs = datasets_of(data, "outputs")
        self.digest, canonical = naming.event_digest(data, canonical)
        # No facet can be over the cap when the whole event is not: skip measuring each.
        self.max_facet_bytes: int | None = max_facet_bytes if len(canonical) > max_facet_bytes else None
        # Most events name no secret word anywhere: those are not walked.
        self.redactor: Redactor | None = redactor if redactor.applies_to(canonical) else None
        self.redacted: list[str] = []

    def events(self) -> list[Event]:
        parent_run, parent_job, root_run = _parent_ids(self.run_facets.get("parent"))
        job_ctx = naming.job_context_id(self.job_namespace, self.job_name)
        run_ctx = naming.run_context_id(self.run_id)
        lineage = [naming.run_context_id(r) for r in (parent_run, root_run) if r and r != self.run_id]
        lineage = list(dict.fromkeys(lineage))
        root = naming.run_context_id(root_run or parent_run or self.run_id)
        identity = _job_identity(self.job_namespace, self.job_name)
        job_parents = (naming.job_context_id(*parent_job),) if parent_job and parent_job != (
            self.job_namespace, self.job_name) else ()
        run_parents = (job_ctx, *lineage)
        # The contexts' descriptions are the same in every event of a run: with a UUIDv7
        # run id they are stamped with the time it carries and named by their content,
        # so a run's events describe them once (the rest are duplicates, made once per
        # process: a pure function of the run); else per event.
        described_at = naming.run_id_time(self.run_id)
        if described_at is not None:
            events = list(_run_contexts(self.run_id, self.job_namespace, self.job_name, job_parents, run_parents, root,
                                        described_at))
        else:
            events = list(_contexts(self.run_id, self.job_namespace, self.job_name, job_parents, run_parents, root,
                                    self.when, self.digest, self.digest))
        datasets = Datasets(self.max_facet_bytes, self.redactor)
        inputs, outputs = self._edges(datasets)
        events.extend(datasets.records(self.digest, self.when, root))
        parameters = self._parameters()
        custom = {"ol_run_id": string_value(self.run_id), **identity, **self._facets()}
        custom |= redacted_flag(self.redacted)  # after the facets and parameters named theirs
        events.append(built(
            ExecutionRecorded, event_id=naming.part_id(self.digest, "execution"),
            occurred_at=self.when, run_id=root, execution_id=naming.execution_id(self.run_id),
            type=naming.type_name(self.job_name), name=naming.node_name(self.job_name),
            context_ids=[job_ctx, run_ctx, *lineage],
            parameters=parameters, custom_properties=custom, inputs=inputs, outputs=outputs,
            state=self.state, started_at=self.when if self.event_type == "START" else None,
            error=self._error(),
        ))
        return events

    def _edges(self, datasets: Datasets) -> tuple[list[ArtifactRef], list[ArtifactRef]]:
        inputs: list[ArtifactRef] = []
        for item in self.inputs:
            version = version_of(item)
            if version is None:
                aid = naming.dataset_id(item["namespace"], item["name"])
            else:
                aid = naming.version_id(item["namespace"], item["name"], version=version, run_id=self.run_id)
            datasets.add(aid, item, version, ("inputFacets",))
            inputs.append(_ref(aid))
        outputs: list[ArtifactRef] = []
        for item in self.outputs:
            version = version_of(item)
            vid = naming.version_id(item["namespace"], item["name"], version=version, run_id=self.run_id)
            datasets.add(vid, item, version or self.run_id, ("outputFacets",), only=VERSION_FACETS)
            did = naming.dataset_id(item["namespace"], item["name"])
            datasets.add(did, item, None, ("outputFacets",))
            outputs += [_ref(vid), _ref(did)]
        return _unique(inputs), _unique(outputs)

    def _parameters(self) -> dict[str, PropertyValue]:
        facet = self.run_facets.get("executionParameters")
        params = facet.get("parameters") if isinstance(facet, dict) else None
        values: dict[str, Any] = {}
        for item in params if isinstance(params, list) else []:
            if isinstance(item, dict) and isinstance(item.get("key"), str) and item["key"]:
                key, value = item["key"][:128], item.get("value")
                if self.redactor is not None and self.redactor.secret(key):
                    value = MARK
                    self.redacted.append(key)
                values[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(value)
        return typed(values)

    def _facets(self) -> dict[str, PropertyValue]:
        props = self._facet_group(self.run_facets, skip=_STRUCTURAL_RUN_FACETS)
        clashing = frozenset(self.job_facets) & frozenset(self.run_facets)
        props.update(self._facet_group(self.job_facets, skip=clashing))
        props.update(self._facet_group({k: self.job_facets[k] for k in clashing}, prefix="job."))
        return props

    def _facet_group(self, facets: dict[str, Any], *, skip: frozenset[str] = frozenset(),
                     prefix: str = "") -> dict[str, PropertyValue]:
        return facet_properties(facets, self.max_facet_bytes, skip=skip, prefix=prefix,
                                redactor=self.redactor, redacted=self.redacted)

    def _error(self) -> ErrorInfo | None:
        facet = self.run_facets.get("errorMessage")
        if not isinstance(facet, dict) or not isinstance(facet.get("message"), str):
            return None
        language = facet.get("programmingLanguage")
        trace = facet.get("stackTrace")
        return ErrorInfo(
            type=f"{language} error"[:255] if isinstance(language, str) and language else "error",
            message=facet["message"],
            traceback=trace if isinstance(trace, str) else None,
        )


@lru_cache(maxsize=1 << 12)
def _run_contexts(run_id: str, job_namespace: str, job_name: str, job_parents: tuple[UUID, ...],
                  run_parents: tuple[UUID, ...], root: UUID, described_at: datetime) -> tuple[Event, Event]:
    """The job and run contexts of a run with a UUIDv7 id, described at the time it
    carries (``described_at``) and named by their content (see ``_RunEventMapper.events``)."""
    job_part = naming.description_digest(run_id, job_namespace, job_name, *job_parents)
    run_part = naming.description_digest(run_id, job_namespace, job_name, *run_parents)
    return _contexts(run_id, job_namespace, job_name, job_parents, run_parents, root, described_at, job_part, run_part)


def _contexts(run_id: str, job_namespace: str, job_name: str, job_parents: tuple[UUID, ...],
              run_parents: tuple[UUID, ...], root: UUID, described_at: datetime, job_part: str,
              run_part: str) -> tuple[Event, Event]:
    """A run's job context and run context, described at ``described_at``, their event ids
    made from ``job_part`` and ``run_part``."""
    identity = _job_identity(job_namespace, job_name)
    return (
        built(
            ContextUpserted, event_id=naming.part_id(job_part, "job"), occurred_at=described_at,
            run_id=root, context_id=naming.job_context_id(job_namespace, job_name), type=naming.JOB_CONTEXT_TYPE,
            name=naming.node_name(job_name), parent_ids=list(job_parents), properties=identity,
        ),
        built(
            ContextUpserted, event_id=naming.part_id(run_part, "run"), occurred_at=described_at,
            run_id=root, context_id=naming.run_context_id(run_id), type=naming.RUN_CONTEXT_TYPE,
            name=naming.node_name(f"{job_name}:{run_id}"),
            parent_ids=list(run_parents), properties={"ol_run_id": string_value(run_id), **identity},
        ),
    )


def _job_identity(job_namespace: str, job_name: str) -> dict[str, PropertyValue]:
    return {"ol_job_namespace": string_value(job_namespace), "ol_job_name": string_value(job_name)}


@lru_cache(maxsize=1 << 14)
def _ref(artifact_id: UUID) -> ArtifactRef:
    """An edge's far end (immutable, so shared: events name the same datasets again and again)."""
    return ArtifactRef(artifact_id=artifact_id)


def _unique(refs: list[ArtifactRef]) -> list[ArtifactRef]:
    return list(dict.fromkeys(refs))
