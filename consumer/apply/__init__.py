"""Apply events to the lineage store: idempotent, order-insensitive, dead letters for bad
input (design rules 2, 3 and 5). The one write path of every event source: the Kafka
consumer, the embedded transport, ``metatrail ingest`` and dead-letter replay."""

from metatrail.consumer.apply.applier import apply_events, apply_in_session
from metatrail.consumer.apply.records import apply_records
from metatrail.consumer.apply.report import ApplyReport, DeadLetter, RawRecord
from metatrail.consumer.apply.retry import retry_transient

__all__ = [
    "ApplyReport",
    "DeadLetter",
    "RawRecord",
    "apply_events",
    "apply_in_session",
    "apply_records",
    "retry_transient",
]
