"""Reading the store from the producer: execution caching and warm start.

``find_cached`` (called lazily by ``@track`` with caching on) and ``latest`` read the
metadata store at ``settings.store_url`` through the consumer's store code, imported lazily
(as the embedded transport does), so a training environment without the service extras
only pays when it uses them. In embedded mode the producer's spool is flushed first, so
the previous call's events are in the store before it is read.

Caching follows TFX: an execution with the same fingerprint (execution type, code version,
parameters, input artifacts' digests) that is COMPLETE, and whose outputs are all still
LIVE (and, for local files, still exist and still hold the content whose digest was
recorded), is reused: its outputs are returned and a CACHED execution is recorded.
Checking a local output costs a ``stat`` while the file is as it was when last hashed
(``metatrail.producer.digest``), and a re-hash when its size, mtime or ctime changed.
``METATRAIL_CACHE=off`` or ``@track(cache=False)`` turns it off.

With ``METATRAIL_TRANSPORT=http`` both ask the team server instead (``GET
/api/v1/cache/{fingerprint}``, ``GET /api/v1/artifacts/latest``): a training job then needs
the server's URL and a token, never database credentials; the local-file and content
checks of the candidates happen here, where the files are.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from metatrail.producer.artifacts import Artifact
from metatrail.producer.digest import PREFIX, digest_path, local_path
from metatrail.schemas.errors import MetatrailError
from metatrail.schemas.settings import Settings

if TYPE_CHECKING:
    from metatrail.consumer.query.domain import Artifact as StoredArtifact

log = logging.getLogger("metatrail.producer")

#: Role of a warm-start artifact on the execution that continues from it.
WARM_START_ROLE = "base_model"


@dataclass(frozen=True)
class CachedResult:
    """A reusable earlier execution and its outputs as (artifact, role) pairs."""

    execution_id: UUID
    outputs: list[tuple[Artifact, str]]
    #: How ``@track`` rebuilds the return value from the outputs (None: infer from roles).
    return_shape: dict[str, Any] | None = None


def to_producer_artifact(stored: StoredArtifact | Artifact) -> Artifact:
    """A producer ``Artifact`` for an artifact read from the store (same id, uri, digest,
    properties), ready to be passed to or returned from a tracked call."""
    if isinstance(stored, Artifact):
        return stored
    return Artifact(
        stored.uri or "",
        stored.type,
        name=stored.name,
        version=stored.version,
        properties=dict(stored.properties),
        custom_properties=dict(stored.custom_properties),
        digest=stored.digest,
        state=stored.state,
        compute_digest=False,
        id=stored.id,
    )


def _settings() -> Settings:
    from metatrail.producer import emitter

    return emitter.settings()


def _flush_before_read(settings: Settings) -> None:
    if settings.transport not in ("embedded", "http"):
        return
    try:
        from metatrail.producer import emitter

        emitter.flush(timeout_s=settings.exit_flush_timeout_s)
    except Exception as exc:  # a flush problem must not break the call; the read may be stale
        log.warning("metatrail: could not flush before reading the store: %s", exc)


def _api(settings: Settings) -> Any:
    from metatrail.producer.httpapi import ApiClient

    return ApiClient.from_settings(settings)


def _artifact_from_json(data: dict[str, Any]) -> Artifact:
    """A producer ``Artifact`` for an artifact the server answered (``ArtifactOut``)."""
    return Artifact(
        data.get("uri") or "",
        data.get("type"),
        name=data.get("name"),
        version=data.get("version"),
        properties=dict(data.get("properties") or {}),
        custom_properties=dict(data.get("custom_properties") or {}),
        digest=data.get("digest"),
        state=data.get("state"),
        compute_digest=False,
        id=data["id"],
    )


def output_file_present(uri: str | None) -> bool:
    """Whether a cached output's local file (a ``file://`` or scheme-less uri) still exists
    here; True for any other uri (s3://..., nothing to check)."""
    import os
    from urllib.parse import unquote, urlparse

    if not uri:
        return True
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return os.path.exists(unquote(parsed.path))
    if parsed.scheme == "" or (len(parsed.scheme) == 1 and os.name == "nt"):
        return os.path.exists(uri)
    return True


def _find_cached_remote(fingerprint: str, settings: Settings, misses: list[str] | None) -> CachedResult | None:
    """The server's candidates (LIVE outputs, newest first); the first whose local files
    exist here and still hold the recorded content."""
    from urllib.parse import quote

    answer = _api(settings).get(f"/cache/{quote(fingerprint, safe='')}")
    for candidate in (answer or {}).get("candidates", []):
        outputs = [(_artifact_from_json(o["artifact"]), str(o["role"])) for o in candidate["outputs"]]
        reason = None
        for artifact, role in outputs:
            why = (None if output_file_present(artifact.uri) else f"file {artifact.uri} no longer exists") \
                or changed_content(artifact)  # type: ignore[arg-type]
            if why is not None:
                reason = f"output {role!r} {why}"
                break
        if reason is None:
            return CachedResult(UUID(candidate["execution_id"]), outputs, candidate.get("return_shape"))
        if misses is not None:
            misses.append(f"execution {candidate['execution_id']}: {reason}")
    return None


def _store_exists(settings: Settings) -> bool:
    """False for a SQLite store file that does not exist yet (nothing to find; and a read
    must not create it)."""
    url = settings.store_url
    if not url.startswith("sqlite"):
        return True
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:":
        return True
    import os

    return os.path.exists(database)


def changed_content(stored: StoredArtifact) -> str | None:
    """Why a cached output's local file no longer holds the content recorded for it, or
    None (also for outputs that are not local files, or whose digest is not one this SDK
    computes: those cannot be checked)."""
    recorded = stored.digest
    if not recorded or not recorded.startswith(PREFIX) or not stored.uri:
        return None
    path = local_path(stored.uri)
    if path is None:
        return None  # gone: the store side says so
    try:
        now = digest_path(path)
    except OSError as exc:
        return f"file {path} cannot be read: {exc}"
    if now == recorded:
        return None
    return f"file {path} changed since it was recorded (digest {recorded} is now {now})"


def find_cached(
    fingerprint: str, settings: Settings | None = None, *, misses: list[str] | None = None
) -> CachedResult | None:
    """The newest COMPLETE execution with ``fingerprint`` whose outputs are all reusable
    (see module doc), or None (also when caching is off or the store cannot be read:
    caching must never break the call; the error is logged, or raised in strict mode).
    ``misses``, if given, gets a line per earlier execution passed over, saying why.
    Blocking: one store read, and a re-hash of each local output that changed on disk."""
    settings = settings or _settings()
    if not settings.cache_enabled:
        return None
    _flush_before_read(settings)
    if settings.transport == "http":
        try:
            return _find_cached_remote(fingerprint, settings, misses)
        except (MetatrailError, KeyError, TypeError, ValueError) as exc:
            if settings.strict:
                raise
            log.warning("metatrail: cache lookup failed, running the call: %s", exc)
            return None
    if not _store_exists(settings):
        return None
    try:
        from metatrail.consumer.store.engine import session_scope
        from metatrail.consumer.worker.lookup import find_cached_execution, shared_engine

        with session_scope(shared_engine(settings.store_url), write=False) as session:
            found = find_cached_execution(
                session, fingerprint, check=changed_content, misses=misses
            )
    except (MetatrailError, ImportError) as exc:
        if settings.strict:
            raise
        log.warning("metatrail: cache lookup failed, running the call: %s", exc)
        return None
    if found is None:
        return None
    return CachedResult(
        UUID(found.execution_id),
        [(to_producer_artifact(a), role) for a, role in found.outputs],
        found.return_shape,
    )


def latest(
    type: str,
    pipeline: str | None = None,
    *,
    role: str = WARM_START_ROLE,
    settings: Settings | None = None,
) -> Artifact | None:
    """The newest LIVE artifact of ``type`` (in ``pipeline``'s context when given), for a
    warm start. Inside a tracked call it is recorded as an INPUT of that call with
    ``role`` (``base_model``), so lineage shows what training continued from. Returns
    None when there is none yet. Blocking (one store read)."""
    settings = settings or _settings()
    _flush_before_read(settings)
    if settings.transport == "http":
        artifact = _latest_remote(type, pipeline, settings)
    else:
        artifact = _latest_local(type, pipeline, settings)
    if artifact is None:
        return None
    from metatrail.producer.recorder import current_execution

    handle = current_execution()
    if handle is not None:
        handle.add_input(artifact, role)
    return artifact


def _latest_remote(type: str, pipeline: str | None, settings: Settings) -> Artifact | None:
    """Raises ``TransportError`` when the server cannot answer (a warm start that silently
    started cold would be worse than an error)."""
    from metatrail.schemas.ids import context_id

    scope = str(context_id("Pipeline", pipeline)) if pipeline else None
    answer = _api(settings).get("/artifacts/latest", type=type, context=scope)
    found = (answer or {}).get("artifact")
    return _artifact_from_json(found) if found else None


def _latest_local(type: str, pipeline: str | None, settings: Settings) -> Artifact | None:
    if not _store_exists(settings):
        return None
    from metatrail.consumer.query.store import Store
    from metatrail.consumer.triggers.candidates import PIPELINE_CONTEXT_TYPE
    from metatrail.consumer.worker.lookup import shared_engine
    from metatrail.schemas.ids import context_id

    scope = str(context_id(PIPELINE_CONTEXT_TYPE, pipeline)) if pipeline else None
    stored = Store(shared_engine(settings.store_url)).latest(type, context=scope)
    return None if stored is None else to_producer_artifact(stored)
