"""``metatrail worker MODULE``: run the steps a user module declares when they trigger."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import err_console
from metatrail.schemas.errors import ConfigError
from metatrail.schemas.urls import mask_url


def _import_user_module(name: str) -> object:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # `metatrail worker my_pipeline.steps` from the project
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ConfigError(f"cannot import module {name!r}: {exc}") from exc


@app.command("worker")
def worker(
    module: str = typer.Argument(..., help="Dotted module declaring @step functions, e.g. my_pipeline.steps."),
    group: str | None = typer.Option(
        None, "--group", help="Consumer group (default <METATRAIL_KAFKA_GROUP>.workers.<MODULE>)."
    ),
    idle_timeout_s: float | None = typer.Option(
        None, "--idle-timeout-s", help="Exit after this long without a trigger (default: run until stopped)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every trigger."),
) -> None:
    """Register MODULE's steps, then run them when the lineage graph triggers them.

    With METATRAIL_TRANSPORT=kafka: joins the module's worker group on <prefix>.triggers
    (several workers of a module share the load; triggers of other modules' steps are
    skipped). Otherwise (embedded): takes triggers straight from the local
    store. Stops cleanly on SIGTERM / SIGINT.
    """
    from metatrail.consumer.service.signals import stop_on_signals
    from metatrail.consumer.worker.embedded import register_steps, resolve_steps, run_embedded
    from metatrail.consumer.worker.lookup import shared_engine
    from metatrail.producer import emitter
    from metatrail.producer.steps import steps_in

    settings = emitter.configure()  # the environment's settings, for this command's recording
    logging.getLogger("metatrail.consumer.worker").setLevel(logging.DEBUG if verbose else logging.INFO)
    mod = _import_user_module(module)
    steps = steps_in(module)
    if not steps:
        raise ConfigError(f"module {module!r} declares no @step functions")
    names = ", ".join(s.name for s in steps)
    if settings.transport == "kafka":
        from metatrail.consumer.worker.kafka import KafkaWorker, default_group

        register_steps(steps)
        # One group per module: every module's workers see every trigger and run their own.
        group = group or f"{default_group(settings)}.{module}"
        kafka_worker = KafkaWorker(settings, shared_engine(settings.store_url), steps, group=group)
        err_console.print(f"worker: steps {names} from {settings.triggers_topic} as group {kafka_worker.group}")
        with stop_on_signals(kafka_worker.stop):
            kafka_worker.run(idle_timeout_s=idle_timeout_s)
        return
    stop = threading.Event()
    err_console.print(f"worker (embedded): steps {names} from {mask_url(settings.store_url)}")
    with stop_on_signals(stop.set):
        report = run_embedded(
            resolve_steps(mod),  # type: ignore[arg-type]
            settings=settings,
            until_idle=idle_timeout_s is not None,
            timeout_s=idle_timeout_s if idle_timeout_s is not None else float("inf"),
            stop=stop,
        )
    err_console.print(f"worker: {report.ran} ran, {report.failed} failed, {report.skipped} skipped")
