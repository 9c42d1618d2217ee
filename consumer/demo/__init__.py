"""``metatrail demo``: a TFX-like click-through-rate pipeline of an online shoe retailer.

ExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Trainer -> Evaluator ->
Pusher, run twice on the embedded default (store and files under ``./.metatrail/``): day 1,
then day 2 where the men's dress shoes data has drifted. Day 2 shows the cache serving the
unchanged SchemaGen, the validator's drift anomalies, that slice's AUC falling, and the
pusher refusing the new model. Then it prints the lineage of the newest model, the two
days' per-slice metrics, where the store is and what to run next.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from consumer.demo.pipeline import STEPS, DayResult, run_day
from consumer.demo.report import print_summary

__all__ = ["DemoResult", "run_demo"]

_STATUS = {"COMPLETE": "[green]ran[/]", "CACHED": "[cyan]cached[/]", "FAILED": "[red]failed[/]"}


@dataclass
class DemoResult:
    """The two days' results, the store URL and the workspace the files went to."""

    days: list[DayResult]
    store_url: str
    workspace: Path
    seconds: float


def run_demo(
    *,
    store_url: str,
    workspace: Path,
    framework: str = "auto",
    rows: int = 20_000,
    console: Console | None = None,
    summary: bool = True,
) -> DemoResult:
    """Run day 1 and day 2 of the pipeline, printing progress and (``summary``) the end
    report. ``framework``: ``keras``, ``numpy`` or ``auto`` (Keras when importable).
    Blocking; raises what a step raises."""
    from consumer.demo.model import keras_available

    console = console or Console()
    _prepare_store(store_url)
    if framework == "auto":
        framework = "keras" if keras_available() else "numpy"
    started = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    console.print(
        f"[bold]metatrail demo[/]: shoe-store click-through pipeline, trainer on [bold]{framework}[/], "
        f"files in {workspace}"
    )
    results: list[DayResult] = []
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(), console=console, transient=False,
    ) as progress:
        for day in (1, 2):
            title = "day 1: first data" if day == 1 else "day 2: men's dress shoes drift"
            task = progress.add_task(f"[bold]{title}[/]", total=len(STEPS), status="")

            def report(d: int, step: str, status: str, seconds: float, task: int = task) -> None:
                if status == "running":
                    progress.update(task, status=f"{step}…")
                    return
                progress.advance(task)
                progress.update(task, status="" if progress.tasks[task].finished else f"{step} done")
                label = _STATUS.get(status, status)
                progress.console.print(f"  day {d}  {step:<17} {label:<22} {seconds * 1000:7.0f} ms")

            results.append(
                run_day(workspace, store_url, day, stamp=stamp, framework=framework, rows=rows, progress=report)
            )
            _print_day(console, results[-1])
    result = DemoResult(results, store_url, workspace, time.perf_counter() - started)
    if summary:
        model = results[-1].artifacts["Trainer"].id
        print_summary(console, store_url, results, str(model) if model else None)
        console.print(f"[dim]demo finished in {result.seconds:.1f} s[/]")
    return result


def _prepare_store(store_url: str) -> None:
    """Create or upgrade the store's tables (the demo queries it before the first event)."""
    from consumer.store.engine import open_engine
    from consumer.store.migrate import upgrade

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
