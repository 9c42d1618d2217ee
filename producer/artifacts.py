"""Artifacts: the data, models and reports that executions read and write.

Identity (client-assigned, design rule 1), fixed the first time an artifact is recorded
and kept on the object, so an output passed on as the next call's input links the two:

* a digest is known (given, or computed for a local file/folder)
  -> ``derived_id("artifact", type, uri, digest)``: the same content at the same place is
  the same artifact in every process;
* no digest, recorded first as an INPUT (a reference by uri)
  -> ``derived_id("artifact", type, uri, name, version)``;
* no digest, recorded first as an OUTPUT -> a new UUIDv7 (each run makes a new one).

``id=`` overrides all of this (e.g. an artifact looked up in the store).
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from producer.digest import digest_path, local_path
from schemas.ids import derived_id, new_id
from schemas.values import Properties, typed

log = logging.getLogger("metatrail.producer")


class Artifact:
    """A thing an execution reads or writes, named by its ``uri``.

    ``type`` defaults to the class's (``Artifact``, ``Dataset``, ``Model``...). For a local
    file or folder the sha256 digest is computed when the artifact is first recorded
    (streamed, cached by path+mtime+size) unless ``digest=`` is given or
    ``compute_digest=False``. ``properties`` / ``custom_properties`` take plain Python values.
    """

    __slots__ = (
        "uri",
        "type",
        "name",
        "version",
        "properties",
        "custom_properties",
        "digest",
        "state",
        "compute_digest",
        "_id",
    )
    default_type = "Artifact"

    def __init__(
        self,
        uri: str,
        type: str | None = None,
        *,
        name: str | None = None,
        version: str | None = None,
        properties: dict[str, Any] | None = None,
        custom_properties: dict[str, Any] | None = None,
        digest: str | None = None,
        state: str = "LIVE",
        compute_digest: bool = True,
        id: UUID | str | None = None,
    ) -> None:
        self.uri = str(uri)
        self.type = type or self.default_type
        self.name = name
        self.version = None if version is None else str(version)
        self.properties: Properties = typed(properties) if properties else {}
        self.custom_properties: Properties = typed(custom_properties) if custom_properties else {}
        self.digest = digest
        self.state = state
        self.compute_digest = compute_digest
        self._id: UUID | None = UUID(str(id)) if id is not None else None

    @property
    def id(self) -> UUID | None:
        """The artifact id, or ``None`` until it is first recorded (see module doc)."""
        return self._id

    def resolve_id(self, *, as_output: bool) -> UUID:
        """Fix and return the id (computing the digest first when it is a local path)."""
        if self._id is None:
            if self.digest is None and self.compute_digest:
                self.ensure_digest()
            if self.digest is not None:
                self._id = derived_id("artifact", self.type, self.uri, self.digest)
            elif as_output:
                self._id = new_id()
            else:
                self._id = derived_id("artifact", self.type, self.uri, self.name, self.version)
        return self._id

    def ensure_digest(self) -> str | None:
        """Compute the digest of a local file/folder uri if not known; ``None`` otherwise."""
        if self.digest is None:
            path = local_path(self.uri)
            if path is not None:
                try:
                    self.digest = digest_path(path)
                except OSError as exc:
                    log.warning("metatrail: cannot hash %s: %s", path, exc)
        return self.digest

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, type={self.type!r}, id={self._id})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Artifact):
            return NotImplemented
        if self._id is not None and other._id is not None:
            return self._id == other._id
        return (self.type, self.uri, self.digest, self.name, self.version) == (
            other.type,
            other.uri,
            other.digest,
            other.name,
            other.version,
        )

    def __hash__(self) -> int:
        return hash((self.type, self.uri))


class Dataset(Artifact):
    """Training, evaluation or raw data."""

    __slots__ = ()
    default_type = "Dataset"


class Model(Artifact):
    """A trained model."""

    __slots__ = ()
    default_type = "Model"


class Metrics(Artifact):
    """An evaluation report."""

    __slots__ = ()
    default_type = "Metrics"


class Schema(Artifact):
    """A data schema."""

    __slots__ = ()
    default_type = "Schema"


class Statistics(Artifact):
    """Statistics computed over a dataset."""

    __slots__ = ()
    default_type = "Statistics"
