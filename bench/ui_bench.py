"""The web UI at scale, PostgreSQL behind a `metatrail serve` process, a client and
headless Chromium on the same machine.

* runs table: the first page of ``/executions`` (50 rows, HTML, with the column
  chooser's metric keys) among 100,000 executions, the request the page then makes for
  its count (``count=1``: up to 10,000, "10,000+" beyond), and variants (newest first, a
  filter and its count, a metric column, page 2 by token); p50 / p95 over --samples;
* lineage view of 500 nodes in Chromium: from navigation start to the dagre layout done
  (the page's data-ready-ms), then one tap answered (interactive); median of --views;
* compare of 10 runs with 200 params each: the page served, and loaded in Chromium.

The graph is the query bench's (``load_metatrail``: six executions per pipeline run,
a shared raw dataset every 100 runs, whose downstream lineage is wide). Writes
bench/results/ui.json.

    python bench/ui_bench.py                      # 100,000 executions
    python bench/ui_bench.py --executions 20000   # quicker
    python bench/ui_bench.py --store postgresql+psycopg://.../db   # a store loaded before
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
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402

from bench.query_bench import PIPELINE, T0, load_metatrail, nid, pg_database  # noqa: E402
from bench.server_bench import start_server, timed  # noqa: E402
from metatrail.consumer.apply import apply_events  # noqa: E402
from metatrail.consumer.store.engine import open_engine  # noqa: E402
from metatrail.schemas import ExecutionCompleted, typed  # noqa: E402
from tests.fixtures.browser import Browser, browser_available  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "ui.json"
TARGETS_MS = {"runs_first_page": 200, "lineage_500_ready": 2000, "compare_10x200": 1000}
COMPARE_RUNS, COMPARE_PARAMS = 10, 200


def add_compare_runs() -> list[ExecutionCompleted]:
    """Ten executions with 200 parameters each, a third of them different per run."""
    rng = random.Random(5)
    out = []
    for r in range(COMPARE_RUNS):
        params = {f"p{i:03d}": (rng.random() if i % 3 == 0 else f"value-{i}") for i in range(COMPARE_PARAMS)}
        out.append(ExecutionCompleted(execution_id=uuid.UUID(int=(7 << 96) | r), type="Sweep", name=f"sweep-{r}",
                                      parameters=typed(params), occurred_at=T0))
    return out


def browser_ms(browser: Browser, path: str, ready_js: str, samples: int) -> dict[str, Any]:
    times = []
    for _ in range(samples):
        browser.driver.get("about:blank")  # each sample is a fresh page load
        browser.open(path)
        times.append(float(browser.wait(lambda: browser.js(ready_js), timeout_s=120, what=path)))
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1), "max_ms": round(times[-1], 1), "samples": samples}


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--views", type=int, default=7)
    parser.add_argument("--store", help="a PostgreSQL store this bench's graph is already in (not loaded, not dropped)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    runs = -(-args.executions // len(PIPELINE))
    made = (args.store, lambda: None, False) if args.store else pg_database()
    if made is None:
        print("PostgreSQL unavailable: nothing measured")
        return 1
    url, drop, _ = made
    results: dict[str, Any] = {"benchmark": "ui", "python": platform.python_version(), "cpus": os.cpu_count(),
                               "backend": "postgresql", "executions": runs * len(PIPELINE), "pipeline_runs": runs,
                               "targets_ms": TARGETS_MS,
                               "notes": "server (metatrail serve, own process), client and headless Chromium on one "
                                        "2-core machine shared with other jobs; sequential requests"}
    try:
        if not args.store:
            print(f"ui bench: loading {runs} pipeline runs ({runs * len(PIPELINE)} executions) into PostgreSQL...",
                  flush=True)
            results["load_s"] = round(load_metatrail(url, runs), 1)
        engine = open_engine(url)
        apply_events(engine, add_compare_runs())
        engine.dispose()
        with tempfile.TemporaryDirectory(prefix="mt-ui-bench-") as tmp:
            proc, base = start_server(url, Path(tmp))
            try:
                results.update(measure(base, args))
            finally:
                proc.terminate()
                proc.wait(60)
    finally:
        drop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


def measure(base: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=120) as client:
        def get(path: str) -> str:
            response = client.get(path)
            assert response.status_code == 200, (path, response.text[:300])
            return response.text

        first = client.get("/executions.json").json()
        counted = client.get("/executions.json?count=1").json()
        assert counted["total_capped"] or counted["total"] >= args.executions, counted["total"]
        pages = {
            "runs_first_page": "/executions",
            "runs_newest_first": "/executions?order=-created_at",
            "runs_count": "/executions?count=1",
            "runs_filtered": "/executions?filter=" + quote("type = 'Trainer' AND properties.epochs > 25"),
            "runs_filtered_count": "/executions?count=1&filter=" + quote("type = 'Trainer' AND properties.epochs > 25"),
            "runs_metric_column": "/executions?cols=metrics.loss,properties.learning_rate",
            "runs_page_2": f"/executions?page={first['next_page']}&at=51",
            "contexts_runs": "/contexts?filter=" + quote("type = 'Run'") + "&order=-created_at",
        }
        for name, path in pages.items():
            out[name] = timed(lambda: get(path), args.samples)
            print(f"  {name:22s} p50 {out[name]['p50_ms']:8.2f} ms  p95 {out[name]['p95_ms']:8.2f} ms", flush=True)
        raw = str(nid(5, 0))
        lineage_path = f"/lineage/{raw}?depth=6&dir=down&max=500"
        nodes = len(client.get(f"/lineage/{raw}.json?depth=6&dir=down&max=500").json()["graph"]["nodes"])
        compare_ids = ",".join(str(uuid.UUID(int=(7 << 96) | r)) for r in range(COMPARE_RUNS))
        compare_path = f"/compare?runs={compare_ids}"
        out["lineage_500_served"] = timed(lambda: get(lineage_path), max(10, args.samples // 5))
        out["compare_10x200_served"] = timed(lambda: get(compare_path), max(10, args.samples // 5))
        rows = len(client.get(compare_path + "&only=").text.split('data-section="params"')) - 1
    out["lineage_nodes"], out["compare_param_rows"] = nodes, rows
    if not browser_available():
        print("  chromium not installed: browser figures skipped")
        return out
    browser = Browser(base)
    try:
        ready = ("var g = document.getElementById('graph'); if (!g || g.dataset.ready !== '1') return null;"
                 "var n = window.mtLineage.cy.nodes()[7]; var t = performance.now(); n.emit('tap');"
                 "return document.getElementById('panel-hidden')"
                 "  ? Number(g.dataset.readyMs) + (performance.now() - t) : null;")
        out["lineage_500_ready"] = browser_ms(browser, lineage_path, ready, args.views)
        drawn = browser.js("return Number(document.getElementById('graph').dataset.nodeCount)")
        loaded = ("var t = performance.getEntriesByType('navigation')[0];"
                  "return t && t.loadEventEnd > 0 ? t.loadEventEnd : null;")
        out["compare_10x200"] = browser_ms(browser, compare_path, loaded, args.views)
    finally:
        browser.quit()
    out["lineage_drawn_nodes"] = drawn
    print(f"  lineage of {drawn} nodes in Chromium: ready and answering a tap at p50 "
          f"{out['lineage_500_ready']['p50_ms']} ms (target <= 2000)")
    print(f"  compare 10 runs x {COMPARE_PARAMS} params ({rows} param rows): loaded in Chromium at p50 "
          f"{out['compare_10x200']['p50_ms']} ms (target <= 1000); "
          f"served p50 {out['compare_10x200_served']['p50_ms']} ms")
    return out


if __name__ == "__main__":
    sys.exit(main())
