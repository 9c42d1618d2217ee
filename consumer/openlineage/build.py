"""Our events built by the mapping without pydantic's validation.

Validating the four or five events each OpenLineage event becomes cost a sixth of the
mapping (~18 µs per OpenLineage event, at Kafka rates), and it re-checks what the mapping
has already made valid by construction:

* ids are ``UUID``s the mapping derived; times are aware UTC datetimes (``fields.event_time``,
  ``naming.run_id_time``); states come from ``mapping.STATES``;
* names, type names, uris and versions are cut to the contract's limits and patterns
  (``naming.node_name``, ``type_name``, ``dataset_uri``, ``version_text``); the types are
  ``naming``'s constants;
* property values are validated ``PropertyValue``s (``fields.string_value``, ``typed``) or
  JSON taken from an event parsed as strict JSON (``facets.json_value``); edges are
  validated ``ArtifactRef``s; an error is a validated ``ErrorInfo``.

The tests check that every mapped event equals its validated twin
(``parse_event(dump_event(e)) == e``), on the shared events and on the edge cases (long
names, naive times, other run ids, errors, models, secrets).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

from metatrail.schemas.construct import construct
from metatrail.schemas.events import ProducerInfo

E = TypeVar("E", bound=BaseModel)


def built(cls: type[E], **values: Any) -> E:
    """An event of ``cls`` from ``values`` the mapping made valid (see module doc), the
    other fields at their defaults and this process as its producer, unvalidated."""
    return construct(cls, producer=ProducerInfo.current(), **values)
