"""``metatrail demo``: run the shoe-store CTR pipeline twice and show what was recorded."""

from __future__ import annotations

from pathlib import Path

import typer

from consumer.cli.app import app
from consumer.cli.output import console
from schemas.errors import ConfigError
from schemas.settings import load_settings


@app.command("demo")
def demo(
    workspace: Path = typer.Option(
        Path(".metatrail/demo"), "--workspace", help="Where the pipeline's data and model files go."
    ),
    framework: str = typer.Option("auto", "--framework", help="Trainer: auto (Keras if installed), keras, numpy."),
    rows: int = typer.Option(20_000, "--rows", min=2_000, help="Impressions per day."),
    kafka: str | None = typer.Option(
        None, "--kafka", metavar="BOOTSTRAP",
        help="Run through this Kafka broker, with `metatrail consume` in the background.",
    ),
) -> None:
    """Run a TFX-like pipeline (ExampleGen ... Pusher) on day 1, then on drifted day-2
    data, recording everything in the local store; print the lineage and the comparison."""
    if framework not in ("auto", "keras", "numpy"):
        raise ConfigError(f"--framework must be auto, keras or numpy, got {framework!r}")
    if kafka:
        from consumer.demo.kafka import run_demo_kafka

        run_demo_kafka(kafka, workspace=workspace.resolve(), framework=framework, rows=rows, console=console)
        return
    from consumer.demo import run_demo
    from producer import configure

    settings = load_settings()
    if settings.transport != "embedded":
        console.print(
            f"[yellow]METATRAIL_TRANSPORT is {settings.transport!r}; the demo uses the embedded store "
            "(use --kafka BOOTSTRAP for a broker)[/]"
        )
    configure(transport="embedded")
    run_demo(store_url=load_settings(transport="embedded").store_url, workspace=workspace.resolve(),
             framework=framework, rows=rows, console=console)
