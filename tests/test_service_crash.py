"""Crash safety (design rule 4): a consumer process SIGKILLed at random moments while it
applies 50,000 events, restarted each time (and once stopped with SIGTERM mid-stream),
leaves exactly the expected graph."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metatrail.consumer.store.engine import open_engine
from metatrail.schemas.settings import Settings
from tests.fixtures.backends import backend_url
from tests.fixtures.broker import kafka_test_settings, settings_env
from tests.fixtures.service import (
    applied_count,
    canonical_dump,
    committed_total,
    dead_letter_count,
    pipeline_workload,
    publish_events,
    wait_for,
)

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

EVENTS = 50_000
KILLS = 5


def start_consumer(settings: Settings, log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env.update(settings_env(settings))
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "metatrail", "consume"], env=env, stdout=log, stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_sigkilled_consumer_loses_and_duplicates_nothing(
    backend: str, kafka_bootstrap: str, topic_prefix: str, server_databases: dict, tmp_path: Path
) -> None:
    store_url = backend_url(backend, server_databases, tmp_path)
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, store_url, kafka_max_poll_records=500)
    runs = EVENTS // 25  # pipeline_workload: 25 events per run with the defaults
    workload = pipeline_workload(runs=runs)
    assert len(workload.events) == EVENTS
    publish_events(kafka_bootstrap, settings.events_topic, workload.events)

    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    log_path = tmp_path / "consumer.log"
    engine = open_engine(store_url)
    proc = start_consumer(settings, log_path)
    try:
        for _ in range(KILLS):
            before = applied_count(engine)
            # kill while it is applying: after it made progress, at a random moment
            wait_for(lambda p=proc, b=before: p.poll() is None and applied_count(engine) > b, 60,
                     interval_s=0.05, what=f"progress past {before} (seed {seed})")
            time.sleep(rng.uniform(0.0, 0.6))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            proc = start_consumer(settings, log_path)
        # a graceful stop mid-stream: exit 0, and every committed offset is in the store
        before = applied_count(engine)
        wait_for(lambda: applied_count(engine) > before, 60, interval_s=0.05, what="progress before SIGTERM")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
        assert committed_total(settings, kafka_bootstrap) <= applied_count(engine)
        proc = start_consumer(settings, log_path)
        wait_for(lambda: committed_total(settings, kafka_bootstrap) == EVENTS, 120,
                 what=f"every offset committed (seed {seed})")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log_path.read_text()[-3000:]

        assert applied_count(engine) == EVENTS
        assert dead_letter_count(engine) == 0
        assert canonical_dump(engine) == workload.expected(), f"seed {seed}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        engine.dispose()
