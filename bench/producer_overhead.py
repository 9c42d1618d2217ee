"""Overhead of recording: a ``@track``-ed no-op with one input and one output artifact.

Measures, in one run on this machine:

* median and p99 wall time of the tracked no-op against the same function undecorated
  (interleaved calls, ``perf_counter_ns``), with the durable spool on and the relay
  running, for the ``file`` transport (headline, ``--transport``) and the ``embedded``
  one (the zero-configuration default, which applies every event to a SQLite store in a
  thread of the same process while we measure: its Python work competes for the GIL).
  "Added" = decorated - undecorated at the same percentile;
* the same with every emit committed straight to SQLite (no journal), to show why the
  journal exists;
* MLMD's synchronous ``put_execution`` (ml-metadata 1.17.1, SQLite file store) recording
  the same call (execution + input + output artifact + 2 events + 1 context), if
  ml-metadata is installed (``pip install ml-metadata==1.17.1``); skipped otherwise;
* a tight ``log_metric`` loop (events/s) and the spool's growth in bytes per event.

Usage: ``python bench/producer_overhead.py [--calls 20000] [--transport embedded|file]``.
Writes ``bench/results/producer.json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import metatrail  # noqa: E402
from metatrail import Artifact, Dataset, Model, log_metric, run, track  # noqa: E402
from metatrail.producer import emitter  # noqa: E402
from metatrail.producer.emitter import Emitter  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "producer.json"


def pct(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0  # ns -> µs


def summary(values: list[int]) -> dict[str, float]:
    return {
        "median_us": pct(values, 0.5),
        "p99_us": pct(values, 0.99),
        "mean_us": statistics.fmean(values) / 1000,
    }


def noop(data: Artifact) -> Artifact:
    return Model("s3://bench/models/out")


def measure_tracked(calls: int) -> dict[str, Any]:
    tracked = track(noop)
    data = Dataset("s3://bench/data/train.csv")
    plain_t: list[int] = []
    tracked_t: list[int] = []
    clock = time.perf_counter_ns
    with run("bench", pipeline="bench"):
        for _ in range(1000):  # warm-up: caches, code version, relay start
            tracked(data)
        for _ in range(calls):
            t0 = clock()
            noop(data)
            t1 = clock()
            tracked(data)
            t2 = clock()
            plain_t.append(t1 - t0)
            tracked_t.append(t2 - t1)
    base, dec = summary(plain_t), summary(tracked_t)
    return {
        "undecorated": base,
        "tracked": dec,
        "added_median_us": dec["median_us"] - base["median_us"],
        "added_p99_us": dec["p99_us"] - base["p99_us"],
    }


def measure_mlmd(calls: int, workdir: Path) -> dict[str, Any]:
    try:
        from ml_metadata.metadata_store import metadata_store
        from ml_metadata.proto import metadata_store_pb2 as pb
    except ImportError as exc:
        return {"skipped": f"ml-metadata not installed ({exc}); pip install ml-metadata==1.17.1"}
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(workdir / "mlmd.sqlite")
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    dataset_t = store.put_artifact_type(pb.ArtifactType(name="Dataset"))
    model_t = store.put_artifact_type(pb.ArtifactType(name="Model"))
    exec_t = store.put_execution_type(pb.ExecutionType(name="noop"))
    ctx_t = store.put_context_type(pb.ContextType(name="Run"))
    [ctx_id] = store.put_contexts([pb.Context(type_id=ctx_t, name="bench")])
    context = store.get_contexts_by_id([ctx_id])[0]
    [in_id] = store.put_artifacts([pb.Artifact(type_id=dataset_t, uri="s3://bench/data/train.csv")])
    data_artifact = store.get_artifacts_by_id([in_id])[0]
    data = Dataset("s3://bench/data/train.csv")

    def record() -> None:
        noop(data)
        execution = pb.Execution(type_id=exec_t, last_known_state=pb.Execution.COMPLETE)
        out = pb.Artifact(type_id=model_t, uri="s3://bench/models/out")
        store.put_execution(
            execution,
            [(data_artifact, pb.Event(type=pb.Event.INPUT)), (out, pb.Event(type=pb.Event.OUTPUT))],
            [context],
        )

    for _ in range(50):
        record()
    times: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        record()
        times.append(clock() - t0)
    return {"put_execution": summary(times), "calls": calls}


def measure_log_metric(count: int) -> dict[str, Any]:
    with run("bench-metrics"):
        t0 = time.perf_counter()
        for i in range(count):
            log_metric("loss", 1.0 / (i + 1), step=i)
        elapsed = time.perf_counter() - t0
    return {"events": count, "seconds": elapsed, "events_per_s": count / elapsed}


def measure_spool_bytes(workdir: Path, calls: int) -> dict[str, Any]:
    """Spool growth per event of the tracked no-op (3 events per call), relay stopped."""
    settings = metatrail.configure(
        transport="file", spool_path=workdir / "bytes" / "spool.db", file_path=workdir / "b.jsonl"
    )
    em = emitter.get()
    spool = em.spool
    em._relay = object()  # type: ignore[assignment]  # no relay: measure growth only
    tracked = track(noop)
    data = Dataset("s3://bench/data/train.csv")
    tracked(data)
    spool.ingest()
    base_db = spool.size_bytes()
    base_journal = spool.writer.offset
    with run("bench-bytes", pipeline="bench"):
        for _ in range(calls):
            tracked(data)
    events = calls * 3
    journal_bytes = spool.writer.offset - base_journal
    spool.ingest()
    db_bytes = spool.size_bytes() - base_db
    payload = spool.conn().execute("SELECT avg(length(payload)) FROM spool").fetchone()[0]
    em._relay = None
    emitter.current = None  # drop without flushing (nothing delivers this spool)
    spool.close()
    del settings
    return {
        "events": events,
        "journal_bytes_per_event": journal_bytes / events,
        "outbox_bytes_per_event": db_bytes / events,
        "avg_payload_bytes": payload,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--mlmd-calls", type=int, default=1_000)
    parser.add_argument("--metrics", type=int, default=50_000)
    parser.add_argument(
        "--transport",
        choices=["embedded", "file"],
        default="file",
        help="headline transport; the other one is measured too",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    load_before = list(os.getloadavg())

    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        work = Path(tmp)
        os.chdir(work)
        common = {
            "spool_path": work / "spool.db",
            "store_url": f"sqlite:///{work / 'store.db'}",
            "file_path": work / "events.jsonl",
        }
        other = "file" if args.transport == "embedded" else "embedded"
        metatrail.configure(transport=other, **{**common, "spool_path": work / "other.db"})
        gc.collect()
        other_result = measure_tracked(args.calls)
        emitter.shutdown(120)

        settings = metatrail.configure(transport=args.transport, **common)
        gc.collect()
        journal = measure_tracked(args.calls)
        metric = measure_log_metric(args.metrics)
        delivered = metatrail.flush(120)

        emitter.shutdown(60)
        direct_settings = metatrail.configure(
            transport=args.transport, **{**common, "spool_path": work / "direct.db"}
        )
        emitter.current = Emitter(direct_settings, journal=False)
        direct = measure_tracked(max(2000, args.calls // 4))
        emitter.shutdown(60)

        mlmd = measure_mlmd(args.mlmd_calls, work)
        size = measure_spool_bytes(work, 2000)
        os.chdir("/")

    ratio = None
    if "put_execution" in mlmd:
        ratio = mlmd["put_execution"]["median_us"] / max(journal["added_median_us"], 1e-9)
    result = {
        "benchmark": "producer_overhead",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": load_before,
            "load_average_at_end": list(os.getloadavg()),
        },
        "transport": settings.transport,
        "relay_running": True,
        "calls": args.calls,
        "tracked_noop": journal,
        "tracked_noop_direct_sqlite_commit": direct,
        f"tracked_noop_{other}_transport": other_result,
        "mlmd": mlmd,
        "mlmd_median_over_added_median": ratio,
        "log_metric": metric,
        "spool": size,
        "all_delivered_after_run": delivered,
        "targets": {"added_median_us": 50, "added_p99_us": 500, "mlmd_ratio": 20},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    t, d = journal, direct
    print(
        f"transport={settings.transport} (relay running, durable spool), {args.calls} calls, interleaved; "
        f"load average {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end ({os.cpu_count()} CPUs)"
    )
    print(
        f"undecorated no-op            median {t['undecorated']['median_us']:8.1f} µs   p99 {t['undecorated']['p99_us']:8.1f} µs"
    )
    print(
        f"@track no-op (1 in, 1 out)   median {t['tracked']['median_us']:8.1f} µs   p99 {t['tracked']['p99_us']:8.1f} µs"
    )
    print(
        f"added by @track              median {t['added_median_us']:8.1f} µs   p99 {t['added_p99_us']:8.1f} µs   (target <= 50 / <= 500)"
    )
    o = other_result
    print(
        f"same, {other} transport{' ' * (14 - len(other))}median {o['added_median_us']:8.1f} µs   p99 {o['added_p99_us']:8.1f} µs"
    )
    print(
        f"same, SQLite commit per emit median {d['added_median_us']:8.1f} µs   p99 {d['added_p99_us']:8.1f} µs   (no journal)"
    )
    if ratio is not None:
        m = mlmd["put_execution"]
        print(
            f"MLMD put_execution (sqlite)  median {m['median_us']:8.1f} µs   p99 {m['p99_us']:8.1f} µs"
        )
        print(f"MLMD median / our added median: {ratio:.1f}x   (target >= 20x)")
    else:
        print(f"MLMD: {mlmd['skipped']}")
    print(
        f"log_metric tight loop: {metric['events_per_s']:,.0f} events/s ({metric['events']} events)"
    )
    print(
        f"spool growth: journal {size['journal_bytes_per_event']:.0f} B/event, "
        f"SQLite outbox {size['outbox_bytes_per_event']:.0f} B/event (avg payload {size['avg_payload_bytes']:.0f} B)"
    )
    print(f"all events delivered after the run: {delivered}")
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
