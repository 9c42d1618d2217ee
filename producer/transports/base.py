"""The one seam between the relay and where events go.

A transport receives batches of spooled events and either delivers the whole batch or
raises. ``TransientTransportError`` (``retriable = True``) means "try the same batch again
later" (broker down, timeout, database busy); ``TransportError`` means retrying the same
way will not help (bad configuration, missing dependency). Either way the events stay in
the spool. Delivery is at-least-once: a batch may be sent again after a crash, which the
consumer's idempotent apply (event ids) makes harmless.

``RejectedEventsError`` means "every event of the batch was delivered except these, which
the destination refuses for what they are" (a Kafka broker refusing a message as too
large): sending them again cannot succeed, so the relay sets them aside
(``metatrail.producer.setaside``) instead of retrying them forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

from metatrail.schemas.errors import TransportError


class SpooledEvent(NamedTuple):
    """One event as the spool holds it: its order, id, partition key and wire bytes.
    (An immutable tuple: the relay makes one per event, and a frozen dataclass costs twice
    as much to build.)"""

    seq: int
    event_id: str
    key: str
    payload: bytes


class RejectedEventsError(TransportError):
    """Some events of a batch were refused for what they are; all the others were
    delivered. ``rejected`` lists (event, reason)."""

    def __init__(self, rejected: Sequence[tuple[SpooledEvent, str]]) -> None:
        self.rejected = list(rejected)
        first = self.rejected[0][1] if self.rejected else ""
        super().__init__(f"{len(self.rejected)} event(s) refused: {first}")


@runtime_checkable
class Transport(Protocol):
    """Delivers batches of spooled events. Called from one thread at a time."""

    def send(self, batch: Sequence[SpooledEvent]) -> None:
        """Deliver every event of ``batch`` or raise ``TransientTransportError`` /
        ``TransportError`` (or ``RejectedEventsError``: all delivered but the events it
        lists). Blocking; returns only once the batch is durable downstream."""

    def close(self, timeout_s: float) -> bool:
        """Release connections, waiting at most ``timeout_s``; ``True`` if closed cleanly."""
