"""Query latency on a synthetic lineage graph, on SQLite and PostgreSQL, with MLMD beside it.

The graph: runs of a 6-step pipeline (ExampleGen -> StatisticsGen -> Transform -> Trainer
-> Evaluator -> Pusher), each run a context under one Pipeline context, 6 artifacts and 6
executions with properties, parameters and metrics; every 100 runs share a raw dataset
(the root). About 13 nodes per run. Loaded through ``metatrail.consumer.apply.apply_events`` in
batches. Measured (p50 / p95 over --samples):

* upstream trace from a random model to its roots (``Store.lineage``, full node details);
* a property filter returning 100 rows (``type = 'Model' AND properties.seed >= k AND
  properties.seed < k + 100``);
* compare of 10 random runs.

Then, on a --mlmd-runs graph in an SQLite file for both, the same questions to
ml-metadata 1.17.1 (``get_lineage_subgraph``; ``get_artifacts`` with a filter matching
~20% of the models) and to metatrail. Writes bench/results/query.json.

    python bench/query_bench.py                      # ~100k nodes, a few minutes
    python bench/query_bench.py --nodes 1000000      # the full size
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
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, make_url, text  # noqa: E402

from metatrail.consumer.apply import apply_events  # noqa: E402
from metatrail.consumer.query import Store  # noqa: E402
from metatrail.consumer.store.engine import open_engine  # noqa: E402
from metatrail.consumer.store.migrate import upgrade  # noqa: E402
from metatrail.schemas import (  # noqa: E402
    ArtifactRecorded,
    ArtifactRef,
    ContextUpserted,
    ExecutionCompleted,
    MetricPoint,
    MetricsLogged,
    typed,
)

PG_ADMIN = os.environ.get("METATRAIL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESULTS = Path(__file__).parent / "results" / "query.json"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
NODES_PER_RUN = 13
RAW_EVERY = 100
#: step -> (output artifact type, input steps); "raw" is the shared root dataset.
PIPELINE = {
    "ExampleGen": ("Examples", ["raw"]),
    "StatisticsGen": ("ExampleStatistics", ["ExampleGen"]),
    "Transform": ("TransformGraph", ["ExampleGen", "StatisticsGen"]),
    "Trainer": ("Model", ["ExampleGen", "Transform"]),
    "Evaluator": ("ModelEvaluation", ["ExampleGen", "Trainer"]),
    "Pusher": ("PushedModel", ["Trainer", "Evaluator"]),
}
PIPELINE_ID = uuid.UUID(int=1)


def nid(kind: int, run: int, step: int = 0) -> uuid.UUID:
    """Deterministic node ids: kind 2 runs, 3 artifacts, 4 executions, 5 raw datasets."""
    return uuid.UUID(int=(kind << 96) | (run << 16) | step)


def run_plan(r: int, rng: random.Random) -> dict[str, Any]:
    """One run's nodes as plain data, shared by the metatrail events and the MLMD protos."""
    when = T0 + timedelta(seconds=30 * r)
    arts, execs = [], []
    produced: dict[str, uuid.UUID] = {"raw": nid(5, r // RAW_EVERY)}
    for i, (step, (out_type, inputs)) in enumerate(PIPELINE.items()):
        aid, xid = nid(3, r, i), nid(4, r, i)
        props: dict[str, Any] = {"split": "train", "size_bytes": rng.randint(1, 10**9)}
        if out_type == "Model":
            props.update(seed=r, accuracy=round(rng.uniform(0.5, 1.0), 4), framework="keras")
        params: dict[str, Any] = {"component_version": "1.17"}
        if step == "Trainer":
            params.update(learning_rate=round(rng.uniform(0.001, 0.1), 5), epochs=rng.randint(1, 50))
        metrics = {}
        if step == "Trainer":
            metrics = {"loss": rng.random(), "accuracy": rng.random()}
        if step == "Evaluator":
            metrics = {"auc": rng.random(), "auc/slice_a": rng.random(), "auc/slice_b": rng.random()}
        execs.append({"id": xid, "type": step, "name": f"{step}-{r}", "params": params, "metrics": metrics,
                      "inputs": [produced[s] for s in inputs], "output": aid, "t": when + timedelta(seconds=i)})
        arts.append({"id": aid, "type": out_type, "uri": f"s3://bench/{r}/{step.lower()}", "props": props,
                     "t": when + timedelta(seconds=i, milliseconds=500)})
        produced[step] = aid
    raw = None
    if r % RAW_EVERY == 0:
        raw = {"id": produced["raw"], "type": "RawData", "uri": f"s3://bench/raw/{r // RAW_EVERY}",
               "props": {"split": "all", "size_bytes": 10**12}, "t": when}
    return {"run": r, "run_id": nid(2, r), "t": when, "artifacts": arts, "executions": execs, "raw": raw}


def plan_events(plan: dict[str, Any]) -> list[Any]:
    r, run_id = plan["run"], plan["run_id"]
    ctx = [PIPELINE_ID, run_id]
    events: list[Any] = [ContextUpserted(context_id=run_id, type="Run", name=f"run-{r}", parent_ids=[PIPELINE_ID],
                                         properties=typed({"index": r}), occurred_at=plan["t"])]
    if plan["raw"]:
        a = plan["raw"]
        events.append(ArtifactRecorded(artifact_id=a["id"], type=a["type"], uri=a["uri"], properties=typed(a["props"]),
                                       occurred_at=a["t"]))
    for a in plan["artifacts"]:
        events.append(ArtifactRecorded(artifact_id=a["id"], type=a["type"], uri=a["uri"], name=a["uri"].split("/", 3)[-1],
                                       properties=typed(a["props"]), context_ids=ctx, occurred_at=a["t"]))
    for x in plan["executions"]:
        events.append(ExecutionCompleted(
            execution_id=x["id"], type=x["type"], name=x["name"], context_ids=ctx, parameters=typed(x["params"]),
            inputs=[ArtifactRef(artifact_id=i, role="in") for i in x["inputs"]],
            outputs=[ArtifactRef(artifact_id=x["output"], role="out")], occurred_at=x["t"]))
        if x["metrics"]:
            events.append(MetricsLogged(execution_id=x["id"], occurred_at=x["t"], points=[
                MetricPoint(key=k, value=v, step=None, timestamp=x["t"]) for k, v in x["metrics"].items()]))
    return events


def plans(runs: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for r in range(runs):
        yield run_plan(r, rng)


def load_metatrail(url: str, runs: int, batch_runs: int = 150) -> float:
    """Apply the graph's events in batches; returns seconds taken."""
    engine = open_engine(url)
    upgrade(engine)
    start = time.perf_counter()
    apply_events(engine, [ContextUpserted(context_id=PIPELINE_ID, type="Pipeline", name="bench", occurred_at=T0)])
    batch: list[Any] = []
    for plan in plans(runs):
        batch.extend(plan_events(plan))
        if (plan["run"] + 1) % batch_runs == 0:
            apply_events(engine, batch)
            batch = []
            if (plan["run"] + 1) % (batch_runs * 20) == 0:
                analyze(engine)  # fresh statistics keep apply's lookups on their indexes
                print(f"    loaded {plan['run'] + 1}/{runs} runs ({time.perf_counter() - start:.0f} s)", flush=True)
    if batch:
        apply_events(engine, batch)
    analyze(engine, vacuum=True)
    engine.dispose()
    return time.perf_counter() - start


def analyze(engine: Any, vacuum: bool = False) -> None:
    """PostgreSQL: refresh planner statistics, and with ``vacuum`` the visibility map too
    (index-only scans then skip the table), as autovacuum would (it may be off, as on the
    test machine). SQLite is left without statistics: see the report in query.json."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE" if vacuum else "ANALYZE"))


def timed(fn: Callable[[], Any], samples: int) -> dict[str, float]:
    """p50/p95/mean in milliseconds over ``samples`` calls (after 3 warm-up calls)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(samples):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3),
            "mean_ms": round(statistics.fmean(times), 3), "samples": samples}


def measure_metatrail(url: str, runs: int, samples: int, rng: random.Random) -> dict[str, Any]:
    store = Store.open(url)
    models = [str(nid(3, rng.randrange(runs), 3)) for _ in range(samples)]
    it = iter(models * 2)
    graph = store.lineage(models[0], "upstream")
    assert len(graph.nodes) == 9 and not graph.truncated, (len(graph.nodes), graph.truncated)
    out: dict[str, Any] = {"lineage_nodes": len(graph.nodes)}
    out["upstream_trace"] = timed(lambda: store.lineage(next(it), "upstream", max_hops=20), samples)

    def prop_filter() -> None:
        k = rng.randrange(max(1, runs - 100))
        page = store.artifacts(f"type = 'Model' AND properties.seed >= {k} AND properties.seed < {k + 100}", limit=100)
        assert len(page.items) == min(100, runs), len(page.items)

    out["property_filter_100"] = timed(prop_filter, samples)

    def compare10() -> None:
        ids = [str(nid(2, rng.randrange(runs))) for _ in range(10)]
        result = store.compare(ids)
        assert len(result.columns) == 10

    out["compare_10_runs"] = timed(compare10, samples)
    store.close()
    return out


# -- MLMD side by side ------------------------------------------------------------------------
def load_mlmd(path: Path, runs: int) -> tuple[Any, dict[uuid.UUID, int]]:
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2 as pb

    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = 3
    store = metadata_store.MetadataStore(config)
    art_types: dict[str, int] = {}
    for name in ["RawData"] + [t for t, _ in PIPELINE.values()]:
        t = pb.ArtifactType(name=name)
        t.properties["split"] = pb.STRING
        t.properties["size_bytes"] = pb.INT
        if name == "Model":
            t.properties["seed"] = pb.INT
            t.properties["accuracy"] = pb.DOUBLE
            t.properties["framework"] = pb.STRING
        art_types[name] = store.put_artifact_type(t)
    exec_types: dict[str, int] = {}
    for step in PIPELINE:
        t = pb.ExecutionType(name=step)
        t.properties["component_version"] = pb.STRING
        if step == "Trainer":
            t.properties["learning_rate"] = pb.DOUBLE
            t.properties["epochs"] = pb.INT
        exec_types[step] = store.put_execution_type(t)
    run_type = store.put_context_type(pb.ContextType(name="Run"))
    ids: dict[uuid.UUID, int] = {}

    def set_props(msg: Any, props: dict[str, Any]) -> None:
        for k, v in props.items():
            if isinstance(v, str):
                msg.properties[k].string_value = v
            elif isinstance(v, int):
                msg.properties[k].int_value = v
            else:
                msg.properties[k].double_value = v

    batch = list(plans(runs))
    for start in range(0, len(batch), 200):
        chunk = batch[start : start + 200]
        arts, art_keys = [], []
        for plan in chunk:
            for a in ([plan["raw"]] if plan["raw"] else []) + plan["artifacts"]:
                msg = pb.Artifact(type_id=art_types[a["type"]], uri=a["uri"], state=pb.Artifact.LIVE)
                set_props(msg, a["props"])
                arts.append(msg)
                art_keys.append(a["id"])
        for key, mid in zip(art_keys, store.put_artifacts(arts)):
            ids[key] = mid
        execs, exec_keys = [], []
        for plan in chunk:
            for x in plan["executions"]:
                msg = pb.Execution(type_id=exec_types[x["type"]], name=x["name"], last_known_state=pb.Execution.COMPLETE)
                set_props(msg, x["params"])
                execs.append(msg)
                exec_keys.append(x["id"])
        for key, mid in zip(exec_keys, store.put_executions(execs)):
            ids[key] = mid
        events = []
        for plan in chunk:
            for x in plan["executions"]:
                for i in x["inputs"]:
                    events.append(pb.Event(artifact_id=ids[i], execution_id=ids[x["id"]], type=pb.Event.INPUT))
                events.append(pb.Event(artifact_id=ids[x["output"]], execution_id=ids[x["id"]], type=pb.Event.OUTPUT))
        store.put_events(events)
        ctxs = [pb.Context(type_id=run_type, name=f"run-{p['run']}") for p in chunk]
        ctx_ids = store.put_contexts(ctxs)
        attributions, associations = [], []
        for plan, cid in zip(chunk, ctx_ids):
            for a in plan["artifacts"]:
                attributions.append(pb.Attribution(artifact_id=ids[a["id"]], context_id=cid))
            for x in plan["executions"]:
                associations.append(pb.Association(execution_id=ids[x["id"]], context_id=cid))
        store.put_attributions_and_associations(attributions, associations)
    return store, ids


def compare_with_mlmd(runs: int, samples: int, scratch: Path, rng: random.Random) -> dict[str, Any] | None:
    try:
        from ml_metadata.metadata_store import metadata_store as mlmd_store
        from ml_metadata.proto import metadata_store_pb2 as pb
    except ImportError:
        print("  MLMD not installed (pip install ml-metadata==1.17.1): side-by-side skipped")
        return None
    print(f"  MLMD side by side on {runs} runs (SQLite files) — loading...", flush=True)
    t = time.perf_counter()
    mlmd, ids = load_mlmd(scratch / "mlmd.db", runs)
    mlmd_load_s = time.perf_counter() - t
    url = f"sqlite:///{scratch / 'metatrail-10k.db'}"
    ours_load_s = load_metatrail(url, runs)
    store = Store.open(url)
    models = [nid(3, rng.randrange(runs), 3) for _ in range(samples)]
    hops = 20

    def mlmd_lineage(model: uuid.UUID) -> Any:
        opts = pb.LineageSubgraphQueryOptions(max_num_hops=hops, direction=pb.LineageSubgraphQueryOptions.UPSTREAM)
        opts.starting_artifacts.filter_query = f"id = {ids[model]}"
        return mlmd.get_lineage_subgraph(opts)

    sub = mlmd_lineage(models[0])
    ours = store.lineage(str(models[0]), "upstream", max_hops=hops)
    assert len(sub.artifacts) + len(sub.executions) == len(ours.nodes), (len(sub.artifacts), len(sub.executions), len(ours.nodes))
    assert len(sub.events) == len(ours.edges), (len(sub.events), len(ours.edges))
    it_m, it_o = iter(models * 2), iter(models * 2)
    res: dict[str, Any] = {"runs": runs, "load_s": {"mlmd": round(mlmd_load_s, 1), "metatrail": round(ours_load_s, 1)}}
    res["lineage"] = {"mlmd": timed(lambda: mlmd_lineage(next(it_m)), samples),
                      "metatrail": timed(lambda: store.lineage(str(next(it_o)), "upstream", max_hops=hops), samples),
                      "nodes": len(ours.nodes), "edges": len(ours.edges)}
    cut = runs // 5
    mlmd_filter = f"type = 'Model' AND properties.seed.int_value < {cut}"
    ours_filter = f"type = 'Model' AND properties.seed < {cut}"
    got_m = mlmd.get_artifacts(list_options=mlmd_store.ListOptions(filter_query=mlmd_filter))
    got_o = store.artifacts(ours_filter, limit=10_000)
    assert len(got_m) == len(got_o.items) == cut, (len(got_m), len(got_o.items))
    # Both sides return full nodes: the five Model properties, type, uri, state, times.
    assert all(len(a.properties) == 5 and a.type_id and a.uri and a.create_time_since_epoch for a in got_m)
    assert all(len(a.properties) == 5 and a.type and a.uri and a.state and a.created_at for a in got_o.items)
    fsamples = max(5, samples // 10)
    res["filter"] = {"mlmd": timed(lambda: mlmd.get_artifacts(list_options=mlmd_store.ListOptions(filter_query=mlmd_filter)), fsamples),
                     "metatrail": timed(lambda: store.artifacts(ours_filter, limit=10_000), fsamples), "matches": cut}
    res["filter"]["metatrail_statement_only"] = statement_only(store, scratch / "metatrail-10k.db", ours_filter, fsamples)
    for q in ("lineage", "filter"):
        res[q]["speedup_p50"] = round(res[q]["mlmd"]["p50_ms"] / res[q]["metatrail"]["p50_ms"], 1)
    store.close()
    return res


def statement_only(store: Store, path: Path, filter_: str, samples: int) -> dict[str, float]:
    """The filter page's SQL statement alone, as the store sends it, run and fetched on a
    bare sqlite3 connection (same page cache size): the floor under ``Store.artifacts``
    before any Python object is built."""
    import sqlite3

    from sqlalchemy import event

    from metatrail.consumer.query.store import SQLITE_CACHE_KIB

    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, params: Any, _context: Any, _many: bool) -> None:
        sent.append((statement, params))

    event.listen(store.engine, "before_cursor_execute", capture)
    store.artifacts(filter_, limit=10_000)
    event.remove(store.engine, "before_cursor_execute", capture)
    statement, params = next((s, p) for s, p in sent if s.lstrip().upper().startswith("SELECT"))
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    try:
        return timed(lambda: conn.execute(statement, params).fetchall(), samples)
    finally:
        conn.close()


def pg_database(template: str | None = None) -> tuple[str, Callable[[], None], bool] | None:
    """A new PostgreSQL database (dropped by the returned callable): a copy of ``template``
    when that database exists (then True), else empty. None: no server to reach."""
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        name = f"mt_query_bench_{os.getpid()}"
        with admin.connect() as conn:
            copied = template is not None and conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": template}).first() is not None
            conn.execute(text(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if copied else "")))
    except Exception as exc:  # unreachable server: skip PostgreSQL
        print(f"  PostgreSQL unavailable ({exc}); skipped")
        return None

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        admin.dispose()

    return admin.url.set(database=name).render_as_string(hide_password=False), drop, copied


def keep_database(url: str, template: str) -> None:
    """Copy the database of ``url`` to ``template`` (a later run's starting point)."""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    source = make_url(url).database
    with admin.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{source}'"))
        conn.execute(text(f"CREATE DATABASE {template} TEMPLATE {source}"))
    admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000, help="graph size (1000000 for the full run)")
    parser.add_argument("--samples", type=int, default=200, help="timed queries per measurement")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--mlmd-runs", type=int, default=10_000, help="runs of the MLMD side-by-side graph (0: skip)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = max(1, args.nodes // NODES_PER_RUN)
    rng = random.Random(11)
    results: dict[str, Any] = {"benchmark": "query", "python": platform.python_version(), "cpus": os.cpu_count(),
                               "notes": "PostgreSQL ANALYZEd during and after the load (autovacuum may be off); "
                                        "SQLite without statistics (ANALYZE makes SQLite put Bloom filters into the "
                                        "recursive lineage walk). Machine shared with other jobs: absolute times vary.",
                               "runs": runs, "nodes_approx": runs * NODES_PER_RUN + runs // RAW_EVERY + 2, "backends": {}}
    print(f"query bench: {runs} runs (~{results['nodes_approx']} nodes), {args.samples} samples")
    with tempfile.TemporaryDirectory(prefix="mt-query-bench-") as tmp:
        scratch = Path(tmp)
        for backend in filter(None, args.backends.split(",")):
            cleanup: Callable[[], None] = lambda: None  # noqa: E731
            if backend == "sqlite":
                url = f"sqlite:///{scratch / 'metatrail.db'}"
            else:
                made = pg_database()
                if made is None:
                    continue
                url, cleanup, _ = made
            try:
                print(f"  {backend}: loading through apply_events...", flush=True)
                load_s = load_metatrail(url, runs)
                row = measure_metatrail(url, runs, args.samples, rng)
                row["load_s"] = round(load_s, 1)
                results["backends"][backend] = row
                print(f"  {backend}: loaded in {load_s:.0f} s")
                for q in ("upstream_trace", "property_filter_100", "compare_10_runs"):
                    print(f"    {q:22s} p50 {row[q]['p50_ms']:8.2f} ms   p95 {row[q]['p95_ms']:8.2f} ms")
            finally:
                cleanup()
        if args.mlmd_runs:
            side = compare_with_mlmd(args.mlmd_runs, args.samples, scratch, rng)
            if side:
                results["mlmd_side_by_side"] = side
                for q in ("lineage", "filter"):
                    print(f"    {q:8s} MLMD p50 {side[q]['mlmd']['p50_ms']:8.2f} ms   metatrail p50 "
                          f"{side[q]['metatrail']['p50_ms']:8.2f} ms   speedup {side[q]['speedup_p50']}x")
                print(f"    filter statement alone (bare sqlite3) p50 "
                      f"{side['filter']['metatrail_statement_only']['p50_ms']:8.2f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
