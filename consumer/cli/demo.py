"""``metatrail demo``: run the shoe-store CTR pipeline twice and show what was recorded."""

from __future__ import annotations

import shutil
from pathlib import Path

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import console
from metatrail.schemas.errors import ConfigError, MetatrailError
from metatrail.schemas.settings import load_settings


def _store_url() -> str:
    """The configured store (default ./.metatrail/metadata.db), a SQLite path made absolute
    so that background processes and the demo agree on it."""
    from sqlalchemy.engine import make_url

    url = load_settings(transport="embedded").store_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        return parsed.set(database=str(Path(parsed.database).resolve())).render_as_string(hide_password=False)
    return url


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _holds_demo(url: str) -> bool:
    """Whether the store already has the demo's pipeline (a second run would find every
    input already processed: the graph triggers nothing twice)."""
    from metatrail.consumer.demo.components import PIPELINE
    from metatrail.consumer.query.store import Store

    try:
        with Store.open(url) as store:  # creates nothing
            return store.count("context", f"type = 'Pipeline' AND name = '{PIPELINE}'") > 0
    except MetatrailError:
        return False  # no store yet


def _start_fresh(url: str, workspace: Path) -> None:
    path = _sqlite_file(url)
    if path is None:
        raise ConfigError("--fresh deletes a SQLite store only; point METATRAIL_STORE_URL at a new database instead")
    shutil.rmtree(workspace, ignore_errors=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    console.print(f"deleted {workspace} and the store {path}")


@app.command("demo")
def demo(
    workspace: Path = typer.Option(
        Path(".metatrail/demo"), "--workspace", help="Where the pipeline's data and model files go."
    ),
    framework: str = typer.Option("auto", "--framework", help="Trainer: auto (Keras if installed), keras, numpy."),
    rows: int = typer.Option(20_000, "--rows", min=2_000, help="Impressions per day."),
    kafka: str | None = typer.Option(
        None, "--kafka", metavar="BOOTSTRAP",
        help="Run through this Kafka broker, with `metatrail consume` and `metatrail worker` in the background.",
    ),
    fresh: bool = typer.Option(
        False, "--fresh", help="First delete the demo's files and the (SQLite) store of an earlier demo run.",
    ),
) -> None:
    """Run a TFX-like pipeline (ExampleGen ... Pusher) on day 1, then on drifted day-2
    data, recording everything in the local store; print the lineage and the comparison."""
    if framework not in ("auto", "keras", "numpy"):
        raise ConfigError(f"--framework must be auto, keras or numpy, got {framework!r}")
    url = _store_url()
    workspace = workspace.resolve()
    if fresh:
        _start_fresh(url, workspace)
    elif _holds_demo(url):
        console.print(
            f"The store {url} already holds a demo run: the pipeline would find nothing new to do.\n"
            "Explore it (metatrail ls executions --filter \"context.name = 'shoe-ctr'\"), run the demo "
            "in an empty directory, or start over with: metatrail demo --fresh",
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if kafka:
        from metatrail.consumer.demo.kafka import run_demo_kafka

        run_demo_kafka(kafka, workspace=workspace, framework=framework, rows=rows, console=console, store_url=url)
        return
    from metatrail.consumer.demo import run_demo
    from metatrail import configure

    if load_settings().transport != "embedded":
        console.print("[yellow]the demo runs on the embedded transport (use --kafka BOOTSTRAP for a broker)[/]")
    configure(transport="embedded", store_url=url)
    result = run_demo(store_url=url, workspace=workspace, framework=framework, rows=rows, console=console)
    if not result.ok:
        raise typer.Exit(1)
