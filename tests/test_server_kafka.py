"""A server configured with a broker (METATRAIL_TRANSPORT=kafka, as in docker-compose):
POST /events publishes the valid events to the events topic, where the consumer service
applies them, and dead-letters the invalid ones in the store; /status reports the group's
lag."""

from __future__ import annotations

import pytest

from metatrail.consumer.service.loop import ConsumeLoop
from metatrail.consumer.store.engine import open_engine
from metatrail.schemas.events import ArtifactRecorded
from metatrail.schemas.ids import new_id
from metatrail.schemas.parse import dump_event
from tests.fixtures.broker import kafka_test_settings
from tests.fixtures.server import LiveServer
from tests.fixtures.service import applied_count, dead_letter_count, running_in_thread, wait_for

pytestmark = pytest.mark.kafka


def test_post_events_goes_through_kafka_to_the_consumer(kafka_bootstrap: str, topic_prefix: str,
                                                         sqlite_url: str) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, sqlite_url)
    loop = ConsumeLoop(settings)
    engine = open_engine(sqlite_url)
    server = LiveServer(sqlite_url, settings).start()
    try:
        with running_in_thread(loop, "consume"), server.client() as api:
            events = [ArtifactRecorded(artifact_id=new_id(), type="Data", uri=f"s3://{i}") for i in range(30)]
            body = b"\n".join(dump_event(e) for e in events) + b"\n{not an event}\n"
            answer = api.post("/events", content=body).json()
            assert (answer["published"], answer["applied"], answer["dead_lettered"]) == (30, 0, 1)
            assert dead_letter_count(engine) == 1  # at the server, with the reason
            wait_for(lambda: applied_count(engine) == 30, 60, what="the consumer applying the published events")
            again = api.post("/events", content=body).json()  # idempotent in effect: the store dedups
            assert again["published"] == 30
            wait_for(lambda: api.get("/status").json()["kafka"]["total_lag"] == 0, 60, what="lag 0")
            assert applied_count(engine) == 30 and dead_letter_count(engine) == 1
            status = api.get("/status").json()
            assert status["kafka"]["group"] == settings.kafka_group and status["kafka"]["error"] is None
    finally:
        server.stop()
        engine.dispose()
