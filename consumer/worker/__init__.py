"""Workers: run the steps the lineage graph triggers (Kafka group member or embedded)."""

from metatrail.consumer.worker.embedded import EmbeddedReport, run_embedded
from metatrail.consumer.worker.runner import Outcome, TriggerRunner, retry_delay_s

__all__ = ["EmbeddedReport", "Outcome", "TriggerRunner", "retry_delay_s", "run_embedded"]
