"""The event contract shared by the producer SDK and the consumer service.

Events (versioned pydantic models), typed property values, client-side ids, the settings
both sides read, and the ``MetatrailError`` tree. Depends on nothing else of metatrail.
"""

from __future__ import annotations

from metatrail.schemas.errors import (
    AmbiguousIdError,
    ConfigError,
    EventValidationError,
    FilterError,
    MetatrailError,
    NotFoundError,
    SourceError,
    StoreError,
    StoreNotFoundError,
    StoreRejectedError,
    TransientStoreError,
    TransientTransportError,
    TransportError,
)
from metatrail.schemas.events import (
    EVENT_KINDS,
    ArtifactRecorded,
    ArtifactRef,
    ArtifactStateChanged,
    CodeVersion,
    ContextMembersAdded,
    ContextUpserted,
    Environment,
    ErrorInfo,
    Event,
    ExecutionCached,
    ExecutionCompleted,
    ExecutionFailed,
    ExecutionRecorded,
    ExecutionStarted,
    MetricPoint,
    MetricsLogged,
    ProducerInfo,
    StepInput,
    StepRegistered,
    TriggerRequested,
    TypeRegistered,
)
from metatrail.schemas.ids import context_id, derived_id, new_id, step_id, trigger_id
from metatrail.schemas.parse import MAX_EVENT_BYTES, dump_event, parse_event
from metatrail.schemas.settings import Settings, load_settings
from metatrail.schemas.values import Properties, PropertyValue, typed
from metatrail.schemas.version import SCHEMA_VERSION

__all__ = [
    "AmbiguousIdError",
    "EVENT_KINDS",
    "MAX_EVENT_BYTES",
    "SCHEMA_VERSION",
    "ArtifactRecorded",
    "ArtifactRef",
    "ArtifactStateChanged",
    "CodeVersion",
    "ConfigError",
    "ContextMembersAdded",
    "ContextUpserted",
    "Environment",
    "ErrorInfo",
    "Event",
    "EventValidationError",
    "ExecutionCached",
    "ExecutionCompleted",
    "ExecutionFailed",
    "ExecutionRecorded",
    "ExecutionStarted",
    "FilterError",
    "MetatrailError",
    "MetricPoint",
    "MetricsLogged",
    "NotFoundError",
    "ProducerInfo",
    "Properties",
    "PropertyValue",
    "Settings",
    "SourceError",
    "StepInput",
    "StepRegistered",
    "StoreError",
    "StoreNotFoundError",
    "StoreRejectedError",
    "TransientStoreError",
    "TransientTransportError",
    "TransportError",
    "TriggerRequested",
    "TypeRegistered",
    "context_id",
    "derived_id",
    "dump_event",
    "load_settings",
    "new_id",
    "parse_event",
    "step_id",
    "trigger_id",
    "typed",
]
