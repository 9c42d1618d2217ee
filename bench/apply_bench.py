"""Apply throughput on SQLite, PostgreSQL and MariaDB, with MLMD beside it in one run.

Applies a synthetic pipeline workload (bench/workload.py) from serialized bytes through
``apply_records`` (validation included) in batches, into a fresh migrated store per
backend. Prints events/s and records/s (artifacts + executions + edges, MLMD's sense),
the median of --repeats runs, and writes bench/results/apply.json.

Besides wall-clock rates it reports the CPU per event of the applying process and, on
PostgreSQL, of the database server's backends (from /proc, the server being local): on a
shared machine those hold still when the wall clock does not.

Each backend is measured twice, alternating: with CPython's default collector (what the
embedded applier gets inside a user's program) and with the collector the service
processes set (``metatrail.consumer.service.gcpolicy``: ``metatrail consume`` and ``ingest``).

    python bench/apply_bench.py [--runs 2000] [--batch 500] [--repeats 3] [--mlmd-runs 300]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import Engine, create_engine, text  # noqa: E402

from bench.workload import STEPS, records_in, run_events  # noqa: E402
from metatrail.consumer.apply import RawRecord, apply_records  # noqa: E402
from metatrail.consumer.service.gcpolicy import tune_for_batches  # noqa: E402
from metatrail.consumer.store.engine import open_engine  # noqa: E402
from metatrail.consumer.store.migrate import upgrade  # noqa: E402
from metatrail.schemas import dump_event  # noqa: E402

SERVERS = {
    "postgresql": "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    "mariadb": "mysql+pymysql://root@127.0.0.1:3306/test",
}
DEFAULT_GC_THRESHOLDS = gc.get_threshold()
RESULTS = Path(__file__).parent / "results" / "apply.json"


def fresh_store(backend: str, scratch: Path) -> tuple[str, object]:
    """A migrated empty store and a cleanup callable."""
    if backend == "sqlite":
        path = scratch / f"{uuid.uuid4().hex}.db"
        url = f"sqlite:///{path}"
        return url, lambda: [p.unlink() for p in scratch.glob(f"{path.name}*")]
    admin = create_engine(SERVERS[backend], isolation_level="AUTOCOMMIT")
    name = f"mt_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    url = admin.url.set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE {name}" + (" WITH (FORCE)" if backend == "postgresql" else "")))
        admin.dispose()

    return url, drop


def server_cpu_s(engine: Engine) -> float:
    """CPU seconds the PostgreSQL backends of the engine's database have used (the server
    runs on this machine); 0 on other backends."""
    if engine.dialect.name != "postgresql":
        return 0.0
    with engine.connect() as conn:
        pids = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")).scalars()
        total = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a server elsewhere, or the backend ended
                continue
            total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def measure(backend: str, payloads: list[bytes], batch: int, scratch: Path) -> tuple[float, float, float]:
    """(seconds, applying process CPU seconds, database server CPU seconds) to apply every
    payload in batches into a fresh store."""
    url, cleanup = fresh_store(backend, scratch)
    engine = open_engine(url)
    upgrade(engine)
    records = [RawRecord(p, f"bench:{i}") for i, p in enumerate(payloads)]
    server_before = server_cpu_s(engine)
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(records), batch):
        report = apply_records(engine, records[i : i + batch])
        assert report.dead_lettered == 0
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    server = server_cpu_s(engine) - server_before
    engine.dispose()
    cleanup()  # type: ignore[operator]
    return elapsed, cpu, server


def mlmd_records_per_s(runs: int, rng: random.Random, scratch: Path, batched_runs: int = 1) -> dict[str, float] | None:
    """MLMD recording the same runs the way TFX does: one put_execution per component
    (execution, its input/output artifacts and events, its contexts), SQLite file."""
    try:
        from ml_metadata import metadata_store
        from ml_metadata.proto import metadata_store_pb2 as pb
    except ImportError:
        return None
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(scratch / f"mlmd-{uuid.uuid4().hex}.db")
    config.sqlite.connection_mode = 3
    store = metadata_store.MetadataStore(config)
    type_ids = {}
    for name in ("Examples", "TransformGraph", "Model", "ModelEvaluation"):
        t = pb.ArtifactType(name=name)
        t.properties["split"] = pb.STRING
        t.properties["size_bytes"] = pb.INT
        type_ids[name] = store.put_artifact_type(t)
    exec_types = {}
    for step in STEPS:
        t = pb.ExecutionType(name=step)
        t.properties["seed"] = pb.INT
        exec_types[step] = store.put_execution_type(t)
    ctx_type = store.put_context_type(pb.ContextType(name="Run"))
    outputs = {"ExampleGen": "Examples", "Transform": "TransformGraph", "Trainer": "Model", "Evaluator": "ModelEvaluation"}
    inputs_of = {"ExampleGen": [], "Transform": ["ExampleGen"], "Trainer": ["ExampleGen", "Transform"], "Evaluator": ["ExampleGen", "Trainer"]}
    records = 0
    executions = 0
    start = time.perf_counter()
    for index in range(runs):
        ctx = pb.Context(type_id=ctx_type, name=f"run-{index}-{uuid.uuid4().hex[:6]}")
        [ctx_id] = store.put_contexts([ctx])
        ctx.id = ctx_id
        produced: dict[str, pb.Artifact] = {}
        for step in STEPS:
            execution = pb.Execution(type_id=exec_types[step], last_known_state=pb.Execution.COMPLETE)
            execution.properties["seed"].int_value = index
            pairs = []
            for src in inputs_of[step]:
                ev = pb.Event(type=pb.Event.INPUT)
                pairs.append((produced[src], ev))
            art = pb.Artifact(type_id=type_ids[outputs[step]], uri=f"s3://b/{index}/{step}", state=pb.Artifact.LIVE)
            art.properties["split"].string_value = "train"
            art.properties["size_bytes"].int_value = rng.randint(1, 10**9)
            pairs.append((art, pb.Event(type=pb.Event.OUTPUT)))
            _, art_ids, _ = store.put_execution(execution, pairs, [ctx])
            art.id = art_ids[-1]
            produced[step] = art
            records += 1 + 1 + len(pairs)  # execution + new artifact + events
            executions += 1
    elapsed = time.perf_counter() - start
    return {"records_per_s": records / elapsed, "executions_per_s": executions / elapsed, "runs": runs}


def collector(mode: str) -> None:
    """The service processes' collector settings, or CPython's defaults."""
    if mode == "service_gc":
        tune_for_batches()
    else:
        gc.unfreeze()
        gc.set_threshold(*DEFAULT_GC_THRESHOLDS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="pipeline runs to apply")
    parser.add_argument("--batch", type=int, default=500, help="events per transaction")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--backends", default="sqlite,postgresql,mariadb")
    parser.add_argument("--mlmd-runs", type=int, default=300, help="runs recorded through MLMD (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args()

    rng = random.Random(7)
    events = [e for i in range(args.runs) for e in run_events(i, rng)]
    counts = records_in(events)
    payloads = [dump_event(e) for e in events]
    event_count = len(events)
    del events  # the service holds one batch of parsed events, not the whole workload
    print(f"workload: {args.runs} runs, {event_count} events, {counts['records']} records "
          f"({counts['artifacts']} artifacts, {counts['executions']} executions, {counts['edges']} edges), "
          f"batches of {args.batch}")
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for backend in args.backends.split(","):
            times: dict[str, list[tuple[float, float, float]]] = {"service_gc": [], "default_gc": []}
            for _ in range(args.repeats):
                for mode in times:
                    collector(mode)
                    times[mode].append(measure(backend, payloads, args.batch, scratch))
            collector("default_gc")
            row: dict[str, object] = {}
            for mode, runs in times.items():
                median = statistics.median(t for t, _, _ in runs)
                row[mode] = {
                    "events_per_s": round(event_count / median),
                    "records_per_s": round(counts["records"] / median),
                    "executions_per_s": round(counts["executions"] / median),
                    "seconds": [round(t, 3) for t, _, _ in runs],
                    # CPU is what a shared machine's wall clock hides: medians per event.
                    "process_cpu_us_per_event": round(statistics.median(c for _, c, _ in runs) / event_count * 1e6, 1),
                    "server_cpu_us_per_event": round(statistics.median(s for _, _, s in runs) / event_count * 1e6, 1),
                }
            row.update(row["service_gc"])  # type: ignore[arg-type]  # the headline figures
            results[backend] = row
            for mode in times:
                fig = row[mode]
                print(f"{backend:>10}: {fig['events_per_s']:>7} events/s  {fig['records_per_s']:>7} records/s  "  # type: ignore[index]
                      f"{fig['executions_per_s']:>6} executions/s  "  # type: ignore[index]
                      f"CPU {fig['process_cpu_us_per_event']} µs/event + server {fig['server_cpu_us_per_event']}  "  # type: ignore[index]
                      f"({mode.replace('_', ' ')}, median of {args.repeats})")
        mlmd = mlmd_records_per_s(args.mlmd_runs, rng, scratch) if args.mlmd_runs else None
    if mlmd:
        results["mlmd_sqlite"] = {k: round(v) for k, v in mlmd.items()}
        print(f"  MLMD 1.17.1 (SQLite file, put_execution per component): {mlmd['records_per_s']:.0f} records/s, "
              f"{mlmd['executions_per_s']:.0f} executions/s")
        sqlite_row = results.get("sqlite")
        if isinstance(sqlite_row, dict):
            ratio = sqlite_row["records_per_s"] / mlmd["records_per_s"]
            results["ratio_sqlite_vs_mlmd_records"] = round(ratio, 1)
            print(f"  metatrail SQLite / MLMD records/s: {ratio:.1f}x")
    elif args.mlmd_runs:
        print("  MLMD not installed (pip install ml-metadata==1.17.1): comparison skipped")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "apply", "python": platform.python_version(), "cpus": os.cpu_count(),
        "runs": args.runs, "events": event_count, "records": counts["records"], "batch": args.batch,
        "repeats": args.repeats, "results": results,
    }, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
