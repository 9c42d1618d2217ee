"""What printing short ids costs: ``Store.short_ids`` for a page of 50, beside the page.

The store holds executions and artifacts recorded the way the SDK records them: UUIDv7 ids
made in bursts, so hundreds share their first 8-12 characters (the case short ids exist
for), plus run contexts with derived ids. Loaded through ``apply_events``. Measured, on
SQLite, PostgreSQL and MariaDB (servers skipped when unreachable), p50/p95 over --samples
random pages: ``Store.find`` of 50 executions (what ``metatrail ls`` reads anyway), then
``Store.short_ids`` of their ids. Writes bench/results/short_ids.json.

    python bench/short_ids_bench.py                  # 100k nodes per backend
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

from metatrail.consumer.apply import apply_events  # noqa: E402
from metatrail.consumer.query import Store  # noqa: E402
from metatrail.consumer.store.engine import open_engine  # noqa: E402
from metatrail.consumer.store.migrate import upgrade  # noqa: E402
from metatrail.schemas import ArtifactRef, ContextUpserted, ExecutionCompleted, new_id  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "short_ids.json"
SERVERS = {
    "postgresql": os.environ.get("METATRAIL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("METATRAIL_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
PAGE = 50


def load(url: str, nodes: int) -> None:
    """``nodes`` executions and artifacts (one output each), 10 runs of contexts; applied in
    batches of 500 events. Ids are minted as the SDK mints them, as fast as it can."""
    engine = open_engine(url)
    upgrade(engine)
    batch: list[Any] = []
    for i in range(nodes // 2):
        run = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-run-{i % 10}")
        if i < 10:
            batch.append(ContextUpserted(context_id=run, type="Run", name=f"run-{i}"))
        batch.append(ExecutionCompleted(execution_id=new_id(), type="Step", name=f"step-{i}", context_ids=[run],
                                        outputs=[ArtifactRef(artifact_id=new_id(), role="out")]))
        if len(batch) >= 500:
            apply_events(engine, batch)
            batch = []
    if batch:
        apply_events(engine, batch)
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    engine.dispose()


def timed(fn: Callable[[], Any], samples: int) -> dict[str, float]:
    for _ in range(3):
        fn()
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3)}


def measure(url: str, samples: int) -> dict[str, Any]:
    rng = random.Random(7)
    with Store.open(url) as store:
        ids = [n.id for n in store.executions(limit=10_000).items]
        pages = [ids[k:k + PAGE] for k in (rng.randrange(len(ids) - PAGE) for _ in range(samples + 3))]
        short = store.short_ids(pages[0])
        lengths = [len(s) for s in store.short_ids(ids[:2000]).values()]
        for full, s in short.items():
            assert store.resolve(s)[1] == full
        cuts = iter(pages * 2)
        listing = timed(lambda: store.executions(limit=PAGE), samples)  # `metatrail ls executions`
        shorts = timed(lambda: store.short_ids(next(cuts)), samples)
    return {"page_of_50": listing, "short_ids_of_50": shorts,
            "ratio_short_ids_to_page_p50": round(shorts["p50_ms"] / listing["p50_ms"], 2),
            "short_id_length": {"min": min(lengths), "median": statistics.median(lengths), "max": max(lengths)}}


def server_url(admin: str) -> tuple[str, Any] | None:
    name = f"mt_bench_short_{os.getpid()}"
    try:
        engine = create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        print(f"  skipped: {exc}".splitlines()[0])
        return None
    return engine.url.set(database=name).render_as_string(hide_password=False), (engine, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    results: dict[str, Any] = {"nodes": args.nodes, "page": PAGE, "machine": platform.platform(),
                               "cpus": os.cpu_count(), "backends": {}}
    with tempfile.TemporaryDirectory() as tmp:
        targets: list[tuple[str, str, Any]] = [("sqlite", f"sqlite:///{tmp}/short.db", None)]
        for backend, admin in SERVERS.items():
            made = server_url(admin)
            if made is not None:
                targets.append((backend, made[0], made[1]))
        for backend, url, cleanup in targets:
            print(f"{backend}: loading {args.nodes} nodes", flush=True)
            try:
                load(url, args.nodes)
                results["backends"][backend] = figures = measure(url, args.samples)
            finally:
                if cleanup is not None:
                    admin, name = cleanup
                    with admin.connect() as conn:
                        force = " WITH (FORCE)" if backend == "postgresql" else ""
                        conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
                    admin.dispose()
            print(f"  page of {PAGE}: p50 {figures['page_of_50']['p50_ms']} ms; short_ids of {PAGE}: "
                  f"p50 {figures['short_ids_of_50']['p50_ms']} ms, p95 {figures['short_ids_of_50']['p95_ms']} ms "
                  f"({figures['ratio_short_ids_to_page_p50']}x the page); short id length {figures['short_id_length']}")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
