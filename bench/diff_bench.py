"""``Store.diff`` latency on 20-step lineages with 1,000 upstream artifacts, per backend.

Each run is a chain of 20 steps: step i reads the previous step's output and 49 input
shards of its own (so 20 x 50 = 1,000 artifacts upstream of the run's model), with ten
parameters, a code version and an environment; a check reads every step's output (an
observer), and an evaluator reads the model and logs an AUC over 50 slices. Consecutive
runs differ in a tenth of the shards' content, one parameter of step 7 and a package
version of step 15. Loaded through ``metatrail.consumer.apply.apply_events``; then
``Store.diff(model of run k, model of run k + 1)`` is timed for random k (the whole call:
both walks, observers, alignment, comparisons, metrics, verdict). p50 / p95 per backend.
Writes bench/results/diff.json.

    python bench/diff_bench.py                 # 12 runs, 30 samples, every reachable backend
    python bench/diff_bench.py --runs 40 --samples 50 --backends sqlite,postgresql
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
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text  # noqa: E402

from metatrail.consumer.apply import apply_events  # noqa: E402
from metatrail.consumer.query import Store  # noqa: E402
from metatrail.consumer.store.engine import open_engine  # noqa: E402
from metatrail.consumer.store.migrate import upgrade  # noqa: E402
from metatrail.schemas import ArtifactRecorded, ArtifactRef, ContextUpserted, typed  # noqa: E402
from metatrail.schemas.events import (  # noqa: E402
    CodeVersion,
    Environment,
    ExecutionCompleted,
    ExecutionStarted,
    MetricPoint,
    MetricsLogged,
)
from metatrail.schemas.ids import context_id  # noqa: E402

ADMIN_URLS = {
    "postgresql": os.environ.get("METATRAIL_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    "mariadb": os.environ.get("METATRAIL_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}
RESULTS = Path(__file__).parent / "results" / "diff.json"
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
STEPS = 20
SHARDS_PER_STEP = 49
SLICES = 50
TARGET_MS = 500.0


def nid(*parts: object) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_OID, "diff-bench:" + ":".join(map(str, parts)))


def run_events(r: int, rng: random.Random) -> list[Any]:
    """One run: a 20-step chain with 49 shards per step, checks, an evaluator."""
    pipe = context_id("Pipeline", "bench")
    t = T0 + timedelta(hours=r)
    events: list[Any] = [ContextUpserted(context_id=pipe, type="Pipeline", name="bench", occurred_at=t)]

    def at(seconds: float) -> datetime:
        return t + timedelta(seconds=seconds)

    def artifact(aid: uuid.UUID, type_: str, name: str, content: str, when: datetime, **props: Any) -> None:
        events.append(ArtifactRecorded(
            artifact_id=aid, type=type_, uri=f"s3://bench/run-{r}/{name}", name=name, digest=f"sha256:{content}",
            properties=typed(props), context_ids=[pipe], occurred_at=when))

    def execution(xid: uuid.UUID, type_: str, inputs: list[ArtifactRef], outputs: list[ArtifactRef], when: datetime,
                  params: dict[str, Any], numpy: str = "1.26.4") -> None:
        common = dict(execution_id=xid, type=type_, name=type_.lower(), context_ids=[pipe], parameters=typed(params),
                      code_version=CodeVersion(source_hash=f"src-{type_}", git_commit="c0ffee", git_dirty=False),
                      environment=Environment(python="3.11.9", platform="linux", host="bench",
                                              packages={"numpy": numpy, "pandas": "2.2.2"}))
        events.append(ExecutionStarted(**common, inputs=inputs, occurred_at=when))  # type: ignore[arg-type]
        events.append(ExecutionCompleted(execution_id=xid, outputs=outputs, occurred_at=when + timedelta(seconds=1)))

    previous: uuid.UUID | None = None
    for i in range(STEPS):
        base = 10 * i
        inputs = []
        for j in range(SHARDS_PER_STEP):
            shard = nid(r, "shard", i, j)
            changed = (j + r) % 10 == 0
            artifact(shard, "Shard", f"shard-{i}-{j}", f"{i}-{j}-{r if changed else 0}", at(base),
                     rows=1000 + (r if changed else 0))
            inputs.append(ArtifactRef(artifact_id=shard, role="shard"))
        if previous is not None:
            inputs.append(ArtifactRef(artifact_id=previous, role="data"))
        out = nid(r, "stage", i)
        params = {f"p{k}": k for k in range(10)}
        params["p3"] = 3 + (r if i == 7 else 0)
        execution(nid(r, "step", i), f"Step{i:02d}", inputs, [ArtifactRef(artifact_id=out, role="data")], at(base + 1),
                  params, numpy="2.0.1" if i == 15 and r % 2 else "1.26.4")
        artifact(out, "Model" if i == STEPS - 1 else "Stage", f"stage-{i}", f"stage-{i}-{r}", at(base + 2),
                 mean=rng.uniform(0, 100), count=rng.randint(1, 10**6))
        report = nid(r, "report", i)
        artifact(report, "Statistics", f"report-{i}", f"report-{i}-{r}", at(base + 4),
                 mean=rng.uniform(0, 100), missing=rng.random())
        execution(nid(r, "check", i), "Check", [ArtifactRef(artifact_id=out, role="data")],
                  [ArtifactRef(artifact_id=report, role="report")], at(base + 3), {})
        previous = out
    evaluation = nid(r, "evaluation")
    artifact(evaluation, "ModelEvaluation", "evaluation", f"evaluation-{r}", at(10 * STEPS + 2), auc=rng.random())
    evaluator = nid(r, "evaluator")
    execution(evaluator, "Evaluator", [ArtifactRef(artifact_id=previous, role="model")],  # type: ignore[arg-type]
              [ArtifactRef(artifact_id=evaluation, role="evaluation")], at(10 * STEPS + 1), {})
    points = [MetricPoint(key="auc", value=rng.random(), timestamp=at(10 * STEPS + 2))]
    points += [MetricPoint(key=f"auc/slice-{s}", value=rng.random(), timestamp=at(10 * STEPS + 2))
               for s in range(SLICES)]
    events.append(MetricsLogged(execution_id=evaluator, points=points, occurred_at=at(10 * STEPS + 2)))
    return events


def load(url: str, runs: int) -> float:
    engine = open_engine(url)
    upgrade(engine)
    rng = random.Random(7)
    started = time.perf_counter()
    for r in range(runs):
        events = run_events(r, rng)
        for i in range(0, len(events), 1000):
            apply_events(engine, events[i : i + 1000])
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
            conn.commit()
    engine.dispose()
    return time.perf_counter() - started


def measure(url: str, runs: int, samples: int) -> dict[str, Any]:
    rng = random.Random(11)
    with Store.open(url) as store:
        first = store.diff(str(nid(0, "stage", STEPS - 1)), str(nid(1, "stage", STEPS - 1)))  # warm up, and the shape
        times, cpu = [], []
        load_before = os.getloadavg()[0]
        for _ in range(samples):
            k = rng.randrange(runs - 1)
            a, b = str(nid(k, "stage", STEPS - 1)), str(nid(k + 1, "stage", STEPS - 1))
            started, started_cpu = time.perf_counter(), time.process_time()
            store.diff(a, b)
            times.append((time.perf_counter() - started) * 1000)
            cpu.append((time.process_time() - started_cpu) * 1000)
        load_after = os.getloadavg()[0]
    times.sort()
    upstream = sum(len(s.inputs) for s in first.steps if s.kind == "lineage")
    return {
        "p50_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[max(0, round(0.95 * len(times)) - 1)], 1),
        "max_ms": round(times[-1], 1),
        "client_cpu_p50_ms": round(statistics.median(cpu), 1),
        "load_average": [round(load_before, 1), round(load_after, 1)],
        "samples": samples,
        "steps_aligned": len(first.steps),
        "artifact_pairs_upstream": upstream,
        "verdict": first.verdict.text,
    }


@contextmanager
def server_database(backend: str) -> Iterator[str]:
    """A fresh database on the backend's server, dropped afterwards."""
    admin = create_engine(ADMIN_URLS[backend], isolation_level="AUTOCOMMIT")
    name = f"mt_bench_diff_{os.getpid()}"
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--backends", default="sqlite,postgresql,mariadb")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        try:
            if backend == "sqlite":
                with tempfile.TemporaryDirectory() as tmp:
                    url = f"sqlite:///{tmp}/bench.db"
                    load_s = load(url, args.runs)
                    results[backend] = {"load_s": round(load_s, 1), **measure(url, args.runs, args.samples)}
            else:
                with server_database(backend) as url:
                    load_s = load(url, args.runs)
                    results[backend] = {"load_s": round(load_s, 1), **measure(url, args.runs, args.samples)}
        except Exception as exc:  # a backend that is not reachable: say so, measure the others
            print(f"{backend}: skipped ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})")
            continue
        r = results[backend]
        print(f"{backend:<11} diff p50 {r['p50_ms']:7.1f} ms  p95 {r['p95_ms']:7.1f} ms  "
              f"(client CPU p50 {r['client_cpu_p50_ms']} ms; {r['steps_aligned']} steps, "
              f"{r['artifact_pairs_upstream']} upstream artifact pairs; load average {r['load_average']})")
    report = {
        "benchmark": "diff",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "target_ms": TARGET_MS,
        "shape": {"steps": STEPS, "upstream_artifacts_per_side": STEPS * (SHARDS_PER_STEP + 1),
                  "observers_per_side": STEPS, "slices": SLICES, "runs": args.runs},
        "notes": ("Store.diff(model of run k, model of run k+1), the whole call (wall time), and the CPU time "
                  "of the calling process; load_average is the machine's 1-minute load before and after "
                  "(2 cores shared with other jobs: wall times grow with it)."),
        "backends": results,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
