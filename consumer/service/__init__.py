"""The Kafka consumer service: consume loop, topics, dead letters, replay and status."""

from metatrail.consumer.service.loop import BatchAbandoned, ConsumeLoop, ConsumeStats
from metatrail.consumer.service.topics import ensure_topics, metatrail_topics

__all__ = ["BatchAbandoned", "ConsumeLoop", "ConsumeStats", "ensure_topics", "metatrail_topics"]
