"""The team server under load, on the query bench's graph (SQLite and PostgreSQL): the
server (`metatrail serve`, its own process) and a load client on this machine.

Measured per backend (p50 / p95 over --samples sequential requests on one keep-alive
connection, after warm-up; each time runs until the whole answer is read, and the client
parses JSON outside the clock):

* lineage: ``GET /lineage`` depth 3, max_nodes 500, downstream of a shared raw dataset
  (about 600 nodes within 3 hops, cut to 500: the wide case), and upstream of a random
  model;
* a filtered list page of 50: ``GET /artifacts?filter=type = 'Model' AND properties.seed
  >= k AND properties.seed < k + 1000&page_size=50``;
* a 100,000-point metric history downsampled to 1,000: ``GET /metrics/history``;
* sustained ``POST /events`` (gzip'd NDJSON batches of 500, the HTTP transport's shape)
  into the store: events/s over --event-batches batches.

The graph is built by ``bench/query_bench.py``'s builder (``load_metatrail``). Writes
bench/results/server.json.

    python bench/server_bench.py                   # ~100k nodes
    python bench/server_bench.py --nodes 1000000   # the full size

A store built once can be measured again: ``--keep DIR`` keeps the built SQLite file and
PostgreSQL database as templates (``DIR/server-bench-<runs>.db``, database
``mt_server_bench_<runs>``) and a later run with the same ``--keep`` and ``--nodes`` copies
them instead of building (every run measures, and posts into, a fresh copy).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.query_bench import (  # noqa: E402
    NODES_PER_RUN, RAW_EVERY, T0, analyze, keep_database, load_metatrail, nid, pg_database, plan_events, plans)
from metatrail.consumer.apply import apply_events  # noqa: E402
from metatrail.consumer.store.engine import open_engine  # noqa: E402
from metatrail.schemas import ExecutionCompleted, MetricPoint, MetricsLogged  # noqa: E402
from metatrail.schemas.parse import dump_event  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "server.json"
HISTORY_POINTS = 100_000
HISTORY_EXECUTION = nid(6, 0)
TARGETS_MS = {"lineage_wide": 50, "lineage_model": 50, "filtered_page_50": 50, "history_100k_to_1000": 100}


def add_history(url: str) -> None:
    """One execution with a 100,000-point loss curve (spikes included)."""
    rng = random.Random(3)
    engine = open_engine(url)
    events: list[Any] = [ExecutionCompleted(execution_id=HISTORY_EXECUTION, type="LongTrainer", name="long")]
    for start in range(0, HISTORY_POINTS, 5000):
        points = [MetricPoint(key="loss", value=1 / (1 + s / 1000) + rng.random() * 0.01 + (5 if s % 9973 == 0 else 0),
                              step=s, timestamp=T0 + timedelta(seconds=s)) for s in range(start, start + 5000)]
        events.append(MetricsLogged(execution_id=HISTORY_EXECUTION, points=points))
    for i in range(0, len(events), 5):
        apply_events(engine, events[i:i + 5])
    analyze(engine, vacuum=True)
    engine.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(url: str, scratch: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    log = (scratch / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "metatrail", "serve", "--port", str(port), "--store", url],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/v1/readyz", timeout=5).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start")


def timed(fn: Callable[[], Any], samples: int) -> dict[str, float]:
    for _ in range(5):
        fn()
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
            "mean_ms": round(statistics.fmean(times), 2), "samples": samples}


def measure(base: str, url: str, runs: int, samples: int, event_batches: int, rng: random.Random) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base + "/api/v1", timeout=120) as api:
        def fetch(path: str, **params: Any) -> httpx.Response:
            """The whole answer, read (the time a client waits); its JSON is parsed
            outside the clock, since a 400 KB lineage answer takes this client (the
            standard library's parser) 5-15 ms, a browser's JSON.parse about 1."""
            response = api.get(path, params=params)
            assert response.status_code == 200, response.text[:300]
            return response

        def get(path: str, **params: Any) -> dict[str, Any]:
            return fetch(path, **params).json()  # type: ignore[no-any-return]

        raws = [str(nid(5, rng.randrange(max(1, runs // RAW_EVERY)))) for _ in range(samples + 5)]
        wide = get("/lineage", node=raws[0], direction="down", depth=3, max_nodes=500)
        out["lineage_wide_nodes"] = len(wide["nodes"])
        out["lineage_wide_truncated"] = wide["truncated"]
        it = iter(raws * 2)
        out["lineage_wide"] = timed(lambda: fetch("/lineage", node=next(it), direction="down", depth=3,
                                                  max_nodes=500), samples)
        models = iter([str(nid(3, rng.randrange(runs), 3)) for _ in range(2 * samples + 10)])
        out["lineage_model"] = timed(lambda: fetch("/lineage", node=next(models), direction="up", depth=3,
                                                   max_nodes=500), samples)

        def page() -> None:
            k = rng.randrange(max(1, runs - 1000))
            body = get("/artifacts", filter=f"type = 'Model' AND properties.seed >= {k} AND properties.seed < {k + 1000}",
                       page_size=50)
            assert len(body["items"]) == min(50, runs)

        out["filtered_page_50"] = timed(page, samples)
        history = {"key": "loss", "execution": str(HISTORY_EXECUTION), "max_points": 1000}
        (series,) = get("/metrics/history", **history)["series"]
        assert series["total"] == HISTORY_POINTS and len(series["points"]) <= 1000
        out["history_100k_to_1000"] = timed(lambda: fetch("/metrics/history", **history), max(20, samples // 4))
        out["events"] = post_events(api, url, runs, event_batches)
    return out


def post_events(api: httpx.Client, url: str, runs: int, batches: int, batch_size: int = 500) -> dict[str, Any]:
    """Sustained POST /events: batches prepared (serialized, gzip'd) before the clock
    starts. Side by side: the same number of events (the next runs) given to
    ``apply_records`` in this process, the server's apply path without HTTP."""
    from metatrail.consumer.apply import RawRecord, apply_records

    inprocess: list[bytes] = []
    for plan in plans(runs + 2 * batches * batch_size // 10 + 20):
        if plan["run"] < runs:
            continue
        inprocess.extend(dump_event(e) for e in plan_events(plan))
        if len(inprocess) >= 2 * batches * batch_size:
            break
    direct, inprocess = inprocess[:batches * batch_size], inprocess[batches * batch_size:]
    engine = open_engine(url)
    start = time.perf_counter()
    for i in range(batches):
        chunk = direct[i * batch_size:(i + 1) * batch_size]
        apply_records(engine, [RawRecord(p, f"bench:{runs}:{i}:{j}") for j, p in enumerate(chunk)])
    direct_s = time.perf_counter() - start
    engine.dispose()
    bodies = []
    for i in range(batches):
        chunk = inprocess[i * batch_size:(i + 1) * batch_size]
        bodies.append(gzip.compress(b"\n".join(chunk) + b"\n", compresslevel=5))
    headers = {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"}
    applied = 0
    start = time.perf_counter()
    for body in bodies:
        response = api.post("/events", content=body, headers=headers)
        assert response.status_code == 200, response.text[:300]
        answer = response.json()
        applied += answer["applied"]
        assert not answer["dead_letters"] and not answer["duplicates"], answer["dead_letters"][:1]
    seconds = time.perf_counter() - start
    assert applied == batches * batch_size, applied
    return {"events": applied, "batch_size": batch_size, "seconds": round(seconds, 2),
            "events_per_s": round(applied / seconds),
            "apply_records_in_process_events_per_s": round(batches * batch_size / direct_s),
            "http_over_in_process": round((applied / seconds) / (batches * batch_size / direct_s), 2)}


def fresh_store(
    backend: str, runs: int, scratch: Path, keep: Path | None
) -> tuple[str, Callable[[], None], float | None] | None:
    """A bench store to measure: built now (seconds taken), or copied from the template
    that ``keep`` holds (load time then None). None: the backend is unavailable."""
    if backend == "sqlite":
        url = f"sqlite:///{scratch / 'metatrail.db'}"
        template = keep / f"server-bench-{runs}.db" if keep else None
        if template is not None and template.exists():
            shutil.copyfile(template, scratch / "metatrail.db")
            return url, lambda: None, None
        load_s = build(url, runs)
        if template is not None:
            keep.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
            shutil.copyfile(scratch / "metatrail.db", template)
        return url, lambda: None, load_s
    template_db = f"mt_server_bench_{runs}" if keep else None
    made = pg_database(template_db)
    if made is None:
        return None
    url, cleanup, copied = made
    if copied:
        return url, cleanup, None
    load_s = build(url, runs)
    if template_db is not None:
        keep_database(url, template_db)
    return url, cleanup, load_s


def build(url: str, runs: int) -> float:
    print("    loading through apply_events...", flush=True)
    load_s = load_metatrail(url, runs)
    add_history(url)
    return load_s


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--event-batches", type=int, default=40)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", type=Path, help="keep built stores here as templates, and reuse them")
    args = parser.parse_args()
    runs = max(1, args.nodes // NODES_PER_RUN)
    rng = random.Random(13)
    results: dict[str, Any] = {
        "benchmark": "server", "python": platform.python_version(), "cpus": os.cpu_count(), "runs": runs,
        "nodes_approx": runs * NODES_PER_RUN + runs // RAW_EVERY + 2, "targets_ms": TARGETS_MS,
        "target_events_per_s": 5000,
        "notes": "server (metatrail serve, own process) and load client on one 2-core machine shared with other "
                 "jobs; sequential requests on one keep-alive connection; events posted into the bench store "
                 "itself (not an empty one)", "backends": {}}
    print(f"server bench: {runs} runs (~{results['nodes_approx']} nodes), {args.samples} samples")
    with tempfile.TemporaryDirectory(prefix="mt-server-bench-") as tmp:
        scratch = Path(tmp)
        for backend in filter(None, args.backends.split(",")):
            made = fresh_store(backend, runs, scratch, args.keep)
            if made is None:
                continue
            url, cleanup, load_s = made
            try:
                proc, base = start_server(url, scratch)
                try:
                    row = measure(base, url, runs, args.samples, args.event_batches, rng)
                finally:
                    proc.terminate()
                    proc.wait(60)
                row["load_s"] = None if load_s is None else round(load_s, 1)
                results["backends"][backend] = row
                loaded = "copied from the kept store" if load_s is None else f"loaded in {load_s:.0f} s"
                print(f"  {backend}: {loaded}; wide lineage {row['lineage_wide_nodes']} nodes")
                for q in TARGETS_MS:
                    print(f"    {q:22s} p50 {row[q]['p50_ms']:8.2f} ms   p95 {row[q]['p95_ms']:8.2f} ms"
                          f"   (target p95 <= {TARGETS_MS[q]} ms)")
                ev = row["events"]
                print(f"    POST /events          {ev['events_per_s']:8d} events/s (target >= 5000); apply_records "
                      f"in process {ev['apply_records_in_process_events_per_s']} events/s (ratio {ev['http_over_in_process']})")
            finally:
                cleanup()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
