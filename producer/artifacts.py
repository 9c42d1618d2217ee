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

from metatrail.producer import emitter, redact
from metatrail.producer.digest import digest_path, local_path
from metatrail.schemas.ids import derived_id, new_id_texts
from metatrail.schemas.values import Properties, typed

log = logging.getLogger("metatrail.producer")

#: Derived ids (a uuid5 each: a SHA-1) by what they are derived from: user code often makes
#: a new ``Dataset("data/train.csv")`` for every call.
_DERIVED: dict[tuple[str | None, ...], tuple[UUID, str]] = {}
_DERIVED_LIMIT = 10_000


def _derived(*parts: str | None) -> tuple[UUID, str]:
    found = _DERIVED.get(parts)
    if found is None:
        value = derived_id("artifact", *parts)
        if len(_DERIVED) > _DERIVED_LIMIT:
            _DERIVED.clear()
        found = _DERIVED[parts] = (value, str(value))
    return found


def _typed(values: dict[str, Any] | None, what: str) -> Properties:
    """``typed(values)``; a value that cannot be a property (not JSON, nested too deep...)
    is reported as a recording error (raised in strict mode) and left out, never raised
    into the user's code."""
    if not values:
        return {}
    try:
        return typed(values)
    except ValueError as exc:
        emitter.report(f"Artifact({what}=...)", exc)
    kept: Properties = {}
    for key, value in values.items():
        try:
            kept.update(typed({key: value}))
        except ValueError:
            continue
    return kept


class Artifact:
    """A thing an execution reads or writes, named by its ``uri``.

    ``type`` defaults to the class's (``Artifact``, ``Dataset``, ``Model``...). For a local
    file or folder the sha256 digest is computed when the artifact is first recorded
    (streamed, cached by path+mtime+size) unless ``digest=`` is given or
    ``compute_digest=False``. ``properties`` / ``custom_properties`` take plain Python values;
    secret-looking ones are recorded as ``"***"`` (``metatrail.producer.redact``).
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
        "_text",
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
        self.name = None if name is None else str(name)
        self.version = None if version is None else str(version)
        self.properties: Properties = _typed(properties, "properties")
        self.custom_properties: Properties = _typed(custom_properties, "custom_properties")
        if self.properties or self.custom_properties:  # secret-looking names: see redact
            self.properties, self.custom_properties, _ = redact.node(
                self.properties, self.custom_properties
            )
        self.digest = digest
        self.state = state
        self.compute_digest = compute_digest
        # The id is fixed once ``_text`` is set; ``_id`` is its UUID, built when asked for.
        self._id: UUID | None = UUID(str(id)) if id is not None else None
        self._text: str | None = None if self._id is None else str(self._id)

    @property
    def id(self) -> UUID | None:
        """The artifact id, or ``None`` until it is first recorded (see module doc)."""
        if self._id is None and self._text is not None:
            self._id = UUID(self._text)
        return self._id

    def resolve_id(self, *, as_output: bool) -> UUID:
        """Fix and return the id (computing the digest first when it is a local path)."""
        self.id_text(as_output=as_output)
        return self.id  # type: ignore[return-value]  # fixed just above

    def id_text(self, *, as_output: bool, fresh: str | None = None) -> str:
        """``str(resolve_id(...))``, kept on the object (the form events carry). ``fresh``
        is the new id to take if one is needed (a new output), so that the recorder can
        draw it in one batch with its events' ids."""
        text = self._text
        if text is None:
            if self.digest is None and self.compute_digest:
                self.ensure_digest()
            if self.digest is not None:
                self._id, text = _derived(self.type, self.uri, self.digest)
            elif as_output:
                text = fresh if fresh is not None else new_id_texts(1)[0]
            else:
                self._id, text = _derived(self.type, self.uri, self.name, self.version)
            self._text = text
        return text

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
        return f"{type(self).__name__}({self.uri!r}, type={self.type!r}, id={self._text})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Artifact):
            return NotImplemented
        if self._text is not None and other._text is not None:
            return self._text == other._text
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
