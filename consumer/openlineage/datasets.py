"""The artifacts an OpenLineage event describes: datasets and their versions (see
``naming`` for their ids), and the static DatasetEvent and JobEvent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from metatrail.consumer.openlineage import naming
from metatrail.consumer.openlineage.build import built
from metatrail.consumer.openlineage.facets import facet_properties, redacted_flag
from metatrail.consumer.openlineage.fields import event_time, object_at, string_value, text
from metatrail.consumer.openlineage.secrets import Redactor
from metatrail.schemas.errors import EventValidationError
from metatrail.schemas.events import ArtifactRecorded, ContextUpserted, Event
from metatrail.schemas.values import PropertyValue

#: The dataset facets a produced version keeps (with its output facets); the others
#: describe the dataset, and go on its reference artifact.
VERSION_FACETS = frozenset({"version", "datasetType", "lifecycleStateChange"})


@dataclass
class Dataset:
    """What one event says about one artifact standing for a dataset (or a version)."""

    namespace: str
    name: str
    version: str | None
    facets: dict[str, PropertyValue] = field(default_factory=dict)
    redacted: list[str] = field(default_factory=list)
    is_model: bool = False

    def record(self, artifact_id: UUID, event_id: UUID, when: datetime, run_id: UUID | None) -> ArtifactRecorded:
        properties = {"ol_namespace": string_value(self.namespace),
                      "ol_name": string_value(self.name), **self.facets}
        properties |= redacted_flag(self.redacted)
        return built(
            ArtifactRecorded,
            event_id=event_id,
            occurred_at=when,
            run_id=run_id,
            artifact_id=artifact_id,
            type=naming.MODEL_TYPE if self.is_model else naming.DATASET_TYPE,
            uri=naming.dataset_uri(self.namespace, self.name),
            name=naming.node_name(self.name),
            version=None if self.version is None else naming.version_text(self.version),
            state="LIVE",
            properties=properties,
        )


class Datasets:
    """The artifacts one event describes, merged by artifact id."""

    def __init__(self, max_facet_bytes: int | None, redactor: Redactor | None = None) -> None:
        self.max_facet_bytes = max_facet_bytes
        self.redactor = redactor
        self.by_id: dict[UUID, Dataset] = {}

    def add(self, artifact_id: UUID, item: dict[str, Any], version: str | None, extra: tuple[str, ...] = (),
            *, only: frozenset[str] | None = None) -> None:
        """Describe ``artifact_id`` with the dataset ``item``'s facets (``only`` those
        named, if given) and those of its ``extra`` groups (``inputFacets``...)."""
        namespace, name = item["namespace"], item["name"]
        entry = self.by_id.get(artifact_id)
        if entry is None:
            entry = self.by_id[artifact_id] = Dataset(namespace, name, version)
        facets = item.get("facets") if isinstance(item.get("facets"), dict) else {}
        for key in ("facets", *extra):
            more = item.get(key)
            if isinstance(more, dict):
                if key == "facets" and only is not None:
                    more = {k: v for k, v in more.items() if k in only}
                entry.facets.update(facet_properties(more, self.max_facet_bytes, redactor=self.redactor,
                                                     redacted=entry.redacted))
        kind = facets.get("datasetType") if facets else None
        if isinstance(kind, dict) and str(kind.get("datasetType", "")).upper() == "MODEL":
            entry.is_model = True

    def records(self, digest: str, when: datetime, run_id: UUID | None) -> list[Event]:
        return [
            entry.record(aid, naming.part_id(digest, f"artifact:{aid}"), when, run_id)
            for aid, entry in self.by_id.items()
        ]


def datasets_of(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = data.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise EventValidationError(f"{key} must be a list, got {type(items).__name__}")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise EventValidationError(f"{key}[{i}] must be an object")
        text(item, "namespace", f"{key}[{i}]")
        text(item, "name", f"{key}[{i}]")
    return items


def version_of(item: dict[str, Any]) -> str | None:
    facets = item.get("facets")
    facet = facets.get("version") if isinstance(facets, dict) else None
    version = facet.get("datasetVersion") if isinstance(facet, dict) else None
    return version if isinstance(version, str) and version else None


def map_dataset_event(data: dict[str, Any], max_facet_bytes: int, redactor: Redactor,
                      canonical: bytes | None = None) -> list[Event]:
    dataset = data.get("dataset")
    if not isinstance(dataset, dict):
        raise EventValidationError("dataset must be an object")
    text(dataset, "namespace", "dataset")
    text(dataset, "name", "dataset")
    when, (digest, canonical) = event_time(data), naming.event_digest(data, canonical)
    datasets = Datasets(max_facet_bytes, redactor if redactor.applies_to(canonical) else None)
    add_static(datasets, dataset)
    return datasets.records(digest, when, None)


def map_job_event(data: dict[str, Any], max_facet_bytes: int, redactor: Redactor,
                  canonical: bytes | None = None) -> list[Event]:
    job = data.get("job")
    if not isinstance(job, dict):
        raise EventValidationError("job must be an object")
    namespace, name = text(job, "namespace", "job"), text(job, "name", "job")
    when, (digest, canonical) = event_time(data), naming.event_digest(data, canonical)
    secrets = redactor if redactor.applies_to(canonical) else None
    redacted: list[str] = []
    props = {"ol_job_namespace": string_value(namespace), "ol_job_name": string_value(name)}
    facets = facet_properties(object_at(job, "facets", "job"), max_facet_bytes, redactor=secrets, redacted=redacted)
    events: list[Event] = [
        built(
            ContextUpserted, event_id=naming.part_id(digest, "job"), occurred_at=when,
            context_id=naming.job_context_id(namespace, name), type=naming.JOB_CONTEXT_TYPE,
            name=naming.node_name(name), properties={**props, **facets, **redacted_flag(redacted)},
        )
    ]
    datasets = Datasets(max_facet_bytes, secrets)
    for item in datasets_of(data, "inputs") + datasets_of(data, "outputs"):
        add_static(datasets, item)
    return events + datasets.records(digest, when, None)


def add_static(datasets: Datasets, item: dict[str, Any]) -> None:
    """A dataset named outside a run: its version's artifact if a facet names one, else
    its reference artifact."""
    version = version_of(item)
    if version is None:
        datasets.add(naming.dataset_id(item["namespace"], item["name"]), item, None)
    else:
        datasets.add(naming.version_id(item["namespace"], item["name"], version=version, run_id=""), item, version)
