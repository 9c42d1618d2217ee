"""MLMD import: build a TFX-like MLMD store with ml-metadata's batched writes, then import
it with ``metatrail import mlmd`` into SQLite and PostgreSQL, side by side in one run.

The store: runs of ExampleGen -> StatisticsGen -> Trainer -> Evaluator under one
``pipeline`` context, each run a ``pipeline_run`` context (child of the pipeline) and each
component a ``node`` context, as TFX's portable orchestrator writes them: every execution
with a property and an output artifact with two properties, INPUT/OUTPUT events with
``[key, index]`` paths, attributions and associations. 25,000 runs = 100,000 executions
(about 1.4M rows). MLMD writes it in chunks (``put_contexts``, ``put_artifacts``,
``put_executions``, ``put_events``, ``put_attributions_and_associations``,
``put_parent_contexts``); both sides are measured in rows of the resulting store per second.

    python bench/mlmd_import_bench.py [--runs 25000] [--skip-postgres] [--out PATH]

Needs ``pip install ml-metadata==1.17.1`` (Python 3.11 or older). Writes
``bench/results/mlmd_import.json`` (or ``--out``: a trial run leaves the recorded figures).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "mlmd_import.json"
#: component -> (output type, output key, input keys as (key, producing component))
COMPONENTS = {
    "ExampleGen": ("Examples", "examples", []),
    "StatisticsGen": ("ExampleStatistics", "statistics", [("examples", "ExampleGen")]),
    "Trainer": ("Model", "model", [("examples", "ExampleGen")]),
    "Evaluator": ("ModelEvaluation", "evaluation", [("examples", "ExampleGen"), ("model", "Trainer")]),
}
CLASS_PATH = {
    "ExampleGen": "tfx.components.example_gen.csv_example_gen.component.CsvExampleGen",
    "StatisticsGen": "tfx.components.statistics_gen.component.StatisticsGen",
    "Trainer": "tfx.components.trainer.component.Trainer",
    "Evaluator": "tfx.components.evaluator.component.Evaluator",
}
CHUNK_RUNS = 250


def build_mlmd(path: Path, runs: int) -> tuple[float, float]:
    """Write the store with ml-metadata's batched calls; returns (wall, CPU) seconds."""
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = 3
    store = metadata_store.MetadataStore(config)
    start, cpu = time.perf_counter(), time.process_time()
    art_types, exec_types = {}, {}
    for comp, (out_type, _, _) in COMPONENTS.items():
        t = pb.ArtifactType(name=out_type, base_type=pb.ArtifactType.MODEL if out_type == "Model" else pb.ArtifactType.DATASET)
        t.properties["span"] = pb.INT
        t.properties["split_names"] = pb.STRING
        art_types[comp] = store.put_artifact_type(t)
        et = pb.ExecutionType(name=CLASS_PATH[comp])
        et.properties["component_id"] = pb.STRING
        exec_types[comp] = store.put_execution_type(et)
    pipeline_t = store.put_context_type(pb.ContextType(name="pipeline"))
    run_t = store.put_context_type(pb.ContextType(name="pipeline_run"))
    node_t = store.put_context_type(pb.ContextType(name="node"))
    [pipeline_id] = store.put_contexts([pb.Context(type_id=pipeline_t, name="ctr")])
    node_ids = dict(zip(COMPONENTS, store.put_contexts(
        [pb.Context(type_id=node_t, name=f"ctr.{c}") for c in COMPONENTS])))
    for first in range(0, runs, CHUNK_RUNS):
        chunk = range(first, min(runs, first + CHUNK_RUNS))
        run_ids = store.put_contexts([pb.Context(type_id=run_t, name=f"run-{r}") for r in chunk])
        store.put_parent_contexts([pb.ParentContext(child_id=c, parent_id=pipeline_id) for c in run_ids])
        arts = []
        for r in chunk:
            for comp, (out_type, key, _) in COMPONENTS.items():
                a = pb.Artifact(type_id=art_types[comp], uri=f"gs://bench/ctr/{comp}/{key}/{r}", state=pb.Artifact.LIVE)
                a.properties["span"].int_value = r
                a.properties["split_names"].string_value = '["train", "eval"]'
                arts.append(a)
        art_ids = iter(store.put_artifacts(arts))
        produced = [{comp: next(art_ids) for comp in COMPONENTS} for _ in chunk]
        execs = []
        for r in chunk:
            for comp in COMPONENTS:
                x = pb.Execution(type_id=exec_types[comp], last_known_state=pb.Execution.COMPLETE)
                x.properties["component_id"].string_value = comp
                execs.append(x)
        exec_ids = iter(store.put_executions(execs))
        events, attributions, associations = [], [], []
        for run_id, outs in zip(run_ids, produced):
            for comp, (_, key, inputs) in COMPONENTS.items():
                xid = next(exec_ids)
                for in_key, source in inputs:
                    e = pb.Event(artifact_id=outs[source], execution_id=xid, type=pb.Event.INPUT)
                    e.path.steps.add().key = in_key
                    e.path.steps.add().index = 0
                    events.append(e)
                e = pb.Event(artifact_id=outs[comp], execution_id=xid, type=pb.Event.OUTPUT)
                e.path.steps.add().key = key
                e.path.steps.add().index = 0
                events.append(e)
                attributions.append(pb.Attribution(artifact_id=outs[comp], context_id=run_id))
                associations.append(pb.Association(execution_id=xid, context_id=run_id))
                associations.append(pb.Association(execution_id=xid, context_id=node_ids[comp]))
        store.put_events(events)
        store.put_attributions_and_associations(attributions, associations)
    return time.perf_counter() - start, time.process_time() - cpu


def store_rows(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'")]
    counts = {t: db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables}
    db.close()
    counts.pop("MLMDEnv", None)
    return counts


def import_once(source: Path, url: str) -> dict[str, Any]:
    """Import in a fresh process (its own peak RSS); returns its JSON report plus RSS."""
    code = (
        "import json, resource, sys\n"
        "from metatrail.consumer.cli import main\n"
        "rc = main(['import', 'mlmd', sys.argv[1], '--url', sys.argv[2], '--json'])\n"
        "use = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print('RSS', use.ru_maxrss, use.ru_utime + use.ru_stime, file=sys.stderr)\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(source), url], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"import failed: {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    rss_kib, cpu_s = proc.stderr.rsplit("RSS", 1)[1].split()[:2]
    return {"seconds": report["seconds"], "cpu_seconds": round(float(cpu_s), 1), "rows": report["rows"],
            "applied": report["applied"], "duplicates": report["duplicates"],
            "peak_rss_mib": round(int(rss_kib) / 1024, 1)}


def pg_database() -> tuple[str, Any] | None:
    try:
        from sqlalchemy import create_engine, text
    except ImportError:
        return None
    admin_url = os.environ.get("METATRAIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    name = f"mt_bench_mlmd_{os.getpid()}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # unreachable server: skip that side
        print(f"  PostgreSQL unavailable ({exc}); skipped")
        return None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return admin.url.set(database=name).render_as_string(hide_password=False), drop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=25_000, help="pipeline runs (4 executions each)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"results file (default {RESULTS})")
    args = parser.parse_args()
    try:
        import ml_metadata  # noqa: F401
    except ImportError:
        print("ml-metadata is not installed (pip install ml-metadata==1.17.1, Python <= 3.11)")
        return 1
    results: dict[str, Any] = {"benchmark": "mlmd_import", "python": platform.python_version(),
                               "cpus": os.cpu_count(), "runs": args.runs, "executions": args.runs * len(COMPONENTS)}
    with tempfile.TemporaryDirectory(prefix="mt-mlmd-bench-") as scratch:
        source = Path(scratch) / "mlmd.sqlite"
        print(f"building the MLMD store: {args.runs:,} runs, {args.runs * len(COMPONENTS):,} executions ...", flush=True)
        build_s, build_cpu = build_mlmd(source, args.runs)
        counts = store_rows(source)
        rows = sum(counts.values())
        results["source_rows"] = counts
        results["rows"] = rows
        results["mlmd_build"] = {"seconds": round(build_s, 1), "cpu_seconds": round(build_cpu, 1),
                                 "rows_per_s": round(rows / build_s)}
        print(f"  MLMD batched writes: {rows:,} rows in {build_s:.1f} s (CPU {build_cpu:.1f} s) = "
              f"{rows / build_s:,.0f} rows/s", flush=True)
        targets = [("sqlite", f"sqlite:///{Path(scratch) / 'metatrail.db'}", None)]
        if not args.skip_postgres:
            pg = pg_database()
            if pg is not None:
                targets.append(("postgresql", pg[0], pg[1]))
        results["import"] = {}
        for backend, url, drop in targets:
            try:
                first = import_once(source, url)
                again = import_once(source, url)
            finally:
                if drop is not None:
                    drop()
            ratio = (first["rows"] / first["seconds"]) / (rows / build_s)
            results["import"][backend] = {
                "first": {**first, "rows_per_s": round(first["rows"] / first["seconds"])},
                "reimport_noop": {**again, "rows_per_s": round(again["rows"] / again["seconds"])},
                "speed_vs_mlmd_build": round(ratio, 2),
                "cpu_vs_mlmd_build": round(build_cpu / first["cpu_seconds"], 2),
            }
            print(f"  import into {backend:10s}: {first['seconds']:.1f} s (CPU {first['cpu_seconds']} s) = "
                  f"{first['rows'] / first['seconds']:,.0f} rows/s ({ratio:.2f}x MLMD's build), peak RSS "
                  f"{first['peak_rss_mib']} MiB; re-import {again['seconds']:.1f} s, {again['applied']} applied",
                  flush=True)
    results["bench_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
