"""The one seam between the relay and where events go.

A transport receives batches of spooled events and either delivers the whole batch or
raises. ``TransientTransportError`` (``retriable = True``) means "try the same batch again
later" (broker down, timeout, database busy); ``TransportError`` means retrying the same
way will not help (bad configuration, missing dependency). Either way the events stay in
the spool. Delivery is at-least-once: a batch may be sent again after a crash, which the
consumer's idempotent apply (event ids) makes harmless.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable


class SpooledEvent(NamedTuple):
    """One event as the spool holds it: its order, id, partition key and wire bytes.
    (An immutable tuple: the relay makes one per event, and a frozen dataclass costs twice
    as much to build.)"""

    seq: int
    event_id: str
    key: str
    payload: bytes


@runtime_checkable
class Transport(Protocol):
    """Delivers batches of spooled events. Called from one thread at a time."""

    def send(self, batch: Sequence[SpooledEvent]) -> None:
        """Deliver every event of ``batch`` or raise ``TransientTransportError`` /
        ``TransportError``. Blocking; returns only once the batch is durable downstream."""

    def close(self, timeout_s: float) -> bool:
        """Release connections, waiting at most ``timeout_s``; ``True`` if closed cleanly."""
