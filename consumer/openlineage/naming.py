"""Identities of what OpenLineage names: runs, jobs, datasets and their versions.

Every id is derived (UUIDv5) from OpenLineage's own identity, so two events that name the
same run, job or dataset agree without a lookup, whatever order they arrive in:

* a run (``runId``) -> an execution ``derived_id("openlineage-run", runId)`` and a run
  context ``derived_id("openlineage-run-context", runId)`` (what its children attach to);
* a job (namespace, name) -> a job context ``derived_id("openlineage-job", ns, name)``;
* a dataset (namespace, name) -> its *reference* artifact, the id the SDK gives
  ``Dataset(uri)`` read by uri (``derived_id("artifact", "Dataset", uri, None, None)``),
  so a ``@track`` function that reads ``Dataset("gs://bucket/file.csv")`` joins the
  dataset an Airflow task wrote;
* a dataset version -> ``derived_id("openlineage-dataset-version", ns, name, version)``
  when a ``version`` facet names it, else ``derived_id("openlineage-dataset-run", ns,
  name, runId)``: one artifact per producing run.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson

from metatrail.schemas.ids import derived_id

#: Type of the artifacts that stand for datasets (``Model`` when ``datasetType`` is MODEL).
DATASET_TYPE = "Dataset"
MODEL_TYPE = "Model"
JOB_CONTEXT_TYPE = "Job"
RUN_CONTEXT_TYPE = "Run"

_TYPE_OK = re.compile(r"[^A-Za-z0-9_.:\-]")
_MAX_TYPE = 128
_MAX_NAME = 255
_MAX_URI = 2048
_MAX_VERSION = 128


def canonical_json(data: Any) -> bytes:
    """The one text of a JSON value (UTF-8): keys sorted, no spaces. orjson, because this
    runs over every OpenLineage event and the standard library's sorted dump cost more
    than the rest of the mapping. Raises ``TypeError`` for what JSON cannot hold."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def event_digest(data: Any, canonical: bytes | None = None) -> tuple[str, bytes]:
    """(sha256 of the canonical JSON of an OpenLineage event, that JSON). The digest is the
    event's identity: a retried or re-consumed event (same content, any key order or
    spacing) has the same. ``canonical``: that JSON when the caller has it already."""
    text = canonical_json(data) if canonical is None else canonical
    return hashlib.sha256(text).hexdigest(), text


def part_id(digest: str, part: str) -> UUID:
    """Event id of one metatrail event made from the OpenLineage event ``digest`` (a
    sha256 hex digest): its first 128 bits XOR a hash of ``part``, as a UUIDv8 (RFC 9562's
    custom version). Deterministic, distinct per part, and cheaper than a UUIDv5 each
    (four or five per event, at Kafka rates)."""
    value = (int(digest[:32], 16) ^ _part_bits(part)) & _PART_MASK
    return UUID(int=value | _PART_VERSION)


#: Every bit of a UUID but its version and variant; UUIDv8 with the RFC 9562 variant.
_PART_MASK = ((1 << 128) - 1) & ~(0xF << 76) & ~(0x3 << 62)
_PART_VERSION = (8 << 76) | (0b10 << 62)


@lru_cache(maxsize=1 << 14)
def _part_bits(part: str) -> int:
    return int.from_bytes(hashlib.blake2b(part.encode("utf-8", "surrogatepass"), digest_size=16).digest(), "big")


def run_id_time(run_id: str) -> datetime | None:
    """The creation time (ms) a UUIDv7 run id carries, or ``None`` for any other id."""
    try:
        value = UUID(run_id)
    except ValueError:
        return None
    if value.version != 7:
        return None
    return datetime.fromtimestamp((value.int >> 80) / 1000, timezone.utc)


def description_digest(*parts: object) -> str:
    """A digest naming a description by its content (see ``part_id``)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8", "surrogatepass")).hexdigest()


@lru_cache(maxsize=1 << 14)
def execution_id(run_id: str) -> UUID:
    return derived_id("openlineage-run", run_id)


@lru_cache(maxsize=1 << 14)
def run_context_id(run_id: str) -> UUID:
    return derived_id("openlineage-run-context", run_id)


@lru_cache(maxsize=1 << 14)
def job_context_id(namespace: str, name: str) -> UUID:
    return derived_id("openlineage-job", namespace, name)


@lru_cache(maxsize=1 << 14)
def dataset_uri(namespace: str, name: str) -> str:
    """A dataset's uri: ``gs://bucket`` + ``a/b.csv`` -> ``gs://bucket/a/b.csv``; ``file`` +
    ``/tmp/x`` -> ``/tmp/x`` (a local path, as the SDK names one); ``bigquery`` + ``p.d.t``
    -> ``bigquery://p.d.t``."""
    if "://" in namespace:
        uri = namespace.rstrip("/") + "/" + name.lstrip("/")
    elif namespace == "file":
        uri = name
    else:
        uri = f"{namespace}://{name}"
    return _fit(uri, _MAX_URI)


def split_uri(uri: str) -> tuple[str, str]:
    """(namespace, name) of a uri, the inverse of ``dataset_uri`` where it can be:
    ``scheme://authority/path`` -> (``scheme://authority``, ``path``); a local path ->
    (``file``, the path); ``file:///x`` -> (``file``, ``/x``); ``scheme://rest`` without a
    path -> (``scheme``, ``rest``)."""
    if "://" not in uri:
        return "file", uri
    scheme, rest = uri.split("://", 1)
    if scheme == "file":
        return "file", rest if rest.startswith("/") else "/" + rest
    if "/" not in rest:
        return scheme, rest
    authority, path = rest.split("/", 1)
    return f"{scheme}://{authority}", path


@lru_cache(maxsize=1 << 14)
def dataset_id(namespace: str, name: str) -> UUID:
    """The dataset's reference artifact: the SDK's id of ``Dataset(uri)`` read by uri."""
    return derived_id("artifact", DATASET_TYPE, dataset_uri(namespace, name), None, None)


@lru_cache(maxsize=1 << 14)
def version_id(namespace: str, name: str, *, version: str | None, run_id: str) -> UUID:
    """The artifact of one version: named by the ``version`` facet, else by the run."""
    if version is not None:
        return derived_id("openlineage-dataset-version", namespace, name, version)
    return derived_id("openlineage-dataset-run", namespace, name, run_id)


@lru_cache(maxsize=1 << 14)
def type_name(job_name: str) -> str:
    """A job name as an execution type name (``[A-Za-z_][A-Za-z0-9_.:-]*``, at most 128
    characters): other characters become ``_``; a long name keeps a hash of the whole."""
    text = _TYPE_OK.sub("_", job_name) or "_"
    if not (text[0].isalpha() or text[0] == "_"):
        text = "_" + text
    return _fit(text, _MAX_TYPE, "-")


@lru_cache(maxsize=1 << 14)
def node_name(text: str) -> str:
    """A name for a node's 255-character name column (a long one keeps a hash)."""
    return _fit(text, _MAX_NAME) if text else "_"


def version_text(text: str) -> str:
    """A version for the 128-character version column (a long one keeps a hash)."""
    return _fit(text, _MAX_VERSION)


def _fit(text: str, limit: int, mark: str = "~") -> str:
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return text[: limit - 18] + mark + digest + mark
