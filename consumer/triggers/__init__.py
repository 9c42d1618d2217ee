"""Event-driven orchestration on the consumer side: trigger evaluation inside the apply
transaction (``evaluate_triggers``) and the relay that publishes the trigger outbox."""

from metatrail.consumer.triggers.evaluate import evaluate_triggers
from metatrail.consumer.triggers.relay import (
    RelayThread,
    TriggerPublisher,
    fetch_unsent,
    mark_sent,
    relay_once,
)

__all__ = ["RelayThread", "TriggerPublisher", "evaluate_triggers", "fetch_unsent", "mark_sent", "relay_once"]
