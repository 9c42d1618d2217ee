"""``metatrail demo``: a TFX-like click-through-rate pipeline of an online shoe retailer.

ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Trainer -> Evaluator ->
Pusher, run twice on the embedded default (store and files under ``./.metatrail/``): day 1,
then day 2 where the men's dress shoes data has drifted. Day 2 shows the cache serving the
unchanged SchemaGen, the validator's drift anomalies, that slice's AUC falling, and the
pusher refusing the new model. Then it prints the lineage of the newest model, the two
days' per-slice metrics, where the store is and what to run next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from metatrail.consumer.demo import components
from metatrail.consumer.demo.pipeline import STEPS, DayResult, day_start, land, read_results, watch_day
from metatrail.consumer.demo.report import print_summary
from metatrail.consumer.query.store import Store

__all__ = ["DemoResult", "run_demo"]

_STATUS = {"COMPLETE": "[green]ran[/]", "CACHED": "[cyan]cached[/]", "FAILED": "[red]failed[/]"}
#: Longest a day may take before the demo gives up waiting for its steps.
DAY_TIMEOUT_S = 300.0
#: Starts whatever runs the triggered steps for one day; returns "nothing more will run".
Runner = Callable[[], Callable[[], bool]]


@dataclass
class DemoResult:
    """The two days' results, the store URL and the workspace the files went to."""

    days: list[DayResult]
    store_url: str
    workspace: Path
    seconds: float

    @property
    def ok(self) -> bool:
        """Every step of both days ended COMPLETE or CACHED."""
        return all(r.states.get(s) in ("COMPLETE", "CACHED") for r in self.days for s in STEPS)


def embedded_runner() -> Runner:
    """Register the steps, then per day run the triggers in a background thread of this
    process (``metatrail.consumer.worker.run_embedded``) until nothing is left to run."""
    from metatrail.consumer.worker.embedded import register_steps, resolve_steps, run_embedded
    from metatrail import flush

    steps = resolve_steps(components)
    register_steps(steps)
    flush(timeout_s=30)

    def start() -> Callable[[], bool]:
        thread = threading.Thread(
            target=run_embedded, args=(steps,), kwargs={"register": False, "timeout_s": DAY_TIMEOUT_S},
            name="metatrail-demo-worker", daemon=True,
        )
        thread.start()
        return lambda: not thread.is_alive()

    return start


def run_demo(
    *,
    store_url: str,
    workspace: Path,
    framework: str = "auto",
    rows: int = 20_000,
    console: Console | None = None,
    summary: bool = True,
    runner: Runner | None = None,
) -> DemoResult:
    """Run day 1 and day 2 of the pipeline, printing progress and (``summary``) the end
    report. ``framework``: ``keras``, ``numpy`` or ``auto`` (Keras when importable).
    ``runner``: starts whatever runs the triggered steps for a day (default: an in-process
    worker, :func:`embedded_runner`). Blocking."""
    from metatrail.consumer.demo.model import keras_available

    console = console or Console()
    _prepare_store(store_url)
    if framework == "auto":
        framework = "keras" if keras_available() else "numpy"
    components.TRAINER = framework
    started = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    console.print(
        f"[bold]metatrail demo[/]: shoe-store click-through pipeline, trainer on [bold]{framework}[/], "
        f"files in {workspace}"
    )
    start_worker = runner or embedded_runner()
    results: list[DayResult] = []
    with Store.open(store_url) as store, Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as progress:
        for day in (1, 2):
            title = "day 1: first data" if day == 1 else "day 2: men's dress shoes drift"
            task = progress.add_task(f"[bold]{title}[/]", total=len(STEPS), status="")

            def report(d: int, step: str, status: str, seconds: float, task: TaskID = task) -> None:
                progress.advance(task)
                progress.update(task, status=f"{step} {status.lower()}")
                label = _STATUS.get(status, status)
                progress.console.print(f"  day {d}  {step:<17} {label:<22} {seconds * 1000:7.0f} ms")

            result = DayResult(day=day, run_name=f"{components.PIPELINE}/day-{day}-{stamp}")
            since = day_start()
            land(workspace, day, result.run_name, rows, seed=7)
            done = start_worker()
            watch_day(store, result, since, done=done, timeout_s=DAY_TIMEOUT_S, progress=report)
            read_results(store, result)
            results.append(result)
            _print_day(console, result)
    missing = [f"day {r.day} {s}" for r in results for s in STEPS if s not in r.states]
    if missing:
        console.print(f"[red]steps that did not run: {', '.join(missing)}[/]")
    result_all = DemoResult(results, store_url, workspace, time.perf_counter() - started)
    if summary:
        print_summary(console, store_url, results, results[-1].model_id)
        console.print(f"[dim]demo finished in {result_all.seconds:.1f} s[/]")
    return result_all


def _prepare_store(store_url: str) -> None:
    """Create or upgrade the store's tables (the demo queries it before the first event)."""
    from metatrail.consumer.store.engine import open_engine
    from metatrail.consumer.store.migrate import upgrade

    engine = open_engine(store_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


def _print_day(console: Console, r: DayResult) -> None:
    cached = [s for s, state in r.states.items() if state == "CACHED"]
    if cached:
        console.print(f"  [cyan]served from cache:[/] {', '.join(cached)}")
    if r.anomalies:
        console.print(f"  [yellow]ExampleValidator found {len(r.anomalies)} anomalies:[/]")
        for a in r.anomalies[:6]:
            console.print(f"    - {a['kind']}: {a['description']} [dim]({a['slice']})[/]")
    else:
        console.print("  [green]ExampleValidator: no anomalies[/]")
