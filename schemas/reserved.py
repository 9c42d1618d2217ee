"""Property names metatrail reserves for its own bookkeeping.

The producer records a few facts it needs later, or that belong to a node's attributes
rather than to the user's properties, as custom properties named under one prefix,
``metatrail.``: how ``@track`` rebuilds a cached call's return value, and a run's start,
end and outcome. They travel in ordinary events (so apply stays one path, idempotent and
order-insensitive), but the query layer takes them out of the properties it shows: a run's
timing and status become attributes of the run, the rest stays internal. User properties
must not start with the prefix; such a property would be hidden the same way.
"""

from __future__ import annotations

#: Every bookkeeping property name starts with this.
RESERVED_PREFIX = "metatrail."

#: On a ``@track(cache=True)`` execution: how to rebuild its return value from its outputs.
RETURN_SHAPE = RESERVED_PREFIX + "return_shape"
#: On a run context: when ``run()`` opened and closed it (ISO 8601, UTC), and how it ended
#: (``COMPLETE`` / ``FAILED``).
RUN_STARTED_AT = RESERVED_PREFIX + "started_at"
RUN_ENDED_AT = RESERVED_PREFIX + "ended_at"
RUN_STATUS = RESERVED_PREFIX + "status"


def is_reserved(name: str) -> bool:
    """Whether ``name`` is a bookkeeping property (never shown as a user property)."""
    return name.startswith(RESERVED_PREFIX)


__all__ = ["RESERVED_PREFIX", "RETURN_SHAPE", "RUN_ENDED_AT", "RUN_STARTED_AT", "RUN_STATUS", "is_reserved"]
