"""What goes into an apply and what comes out of it."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RawRecord:
    """Undecoded input with where it came from.

    ``source_key`` is unique per input position ('kafka:<topic>:<partition>:<offset>',
    'file:<path>:<line>'), so a redelivered poison message is dead-lettered once.
    ``format`` says how to decode the payload: ``metatrail`` (one of our events) or
    ``openlineage`` (one OpenLineage event, mapped to several of ours).
    """

    payload: bytes
    source_key: str
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    format: str = "metatrail"


@dataclass
class DeadLetter:
    """One input that was not applied, and why."""

    source_key: str
    reason: str
    event_id: str | None = None
    kind: str | None = None


@dataclass
class ApplyReport:
    """What one apply did. ``applied + duplicates + dead_lettered`` = inputs given."""

    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    #: Artifacts that are LIVE after this batch and were not LIVE (or did not exist)
    #: before it: what trigger evaluation looks at.
    live_artifact_ids: list[str] = field(default_factory=list)
    #: Steps whose registration this batch applied.
    registered_step_ids: list[str] = field(default_factory=list)
    #: Trigger requests written to the outbox by this batch.
    triggers_requested: int = 0

    def merge(self, other: ApplyReport) -> None:
        """Add another report's counts and lists to this one."""
        self.applied += other.applied
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.dead_letters.extend(other.dead_letters)
        self.live_artifact_ids.extend(other.live_artifact_ids)
        self.registered_step_ids.extend(other.registered_step_ids)
        self.triggers_requested += other.triggers_requested
