"""``metatrail consume``: run the Kafka consumer service in the foreground."""

from __future__ import annotations

import logging

import typer

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import err_console
from metatrail.consumer.service.gcpolicy import tune_for_batches
from metatrail.consumer.service.loop import ConsumeLoop
from metatrail.consumer.service.signals import stop_on_signals
from metatrail.consumer.triggers.relay import kafka_relay
from metatrail.schemas.errors import ConfigError
from metatrail.schemas.settings import load_settings
from metatrail.schemas.urls import mask_url


@app.command("consume")
def consume(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every batch."),
) -> None:
    """Apply the events topic to the store, as a member of METATRAIL_KAFKA_GROUP.

    Stops cleanly on SIGTERM / SIGINT (finishes the batch in hand, commits, leaves the
    group; exit 0). Exits 1 without committing when the store keeps failing.
    """
    settings = load_settings()
    if not settings.kafka_bootstrap:
        raise ConfigError("METATRAIL_KAFKA_BOOTSTRAP is not set: `metatrail consume` needs a broker")
    logging.getLogger("metatrail").setLevel(logging.DEBUG if verbose else logging.INFO)
    relay = kafka_relay(settings)  # trigger outbox -> triggers topic, a pass after each batch
    loop = ConsumeLoop(settings, on_batch=relay.on_batch)
    err_console.print(
        f"consuming {settings.events_topic} as group {settings.kafka_group} "
        f"from {settings.kafka_bootstrap} into {mask_url(settings.store_url)}"
    )
    tune_for_batches()
    with stop_on_signals(loop.stop), relay:
        stats = loop.run()
    err_console.print(
        f"stopped: {stats.batches} batches, {stats.applied} applied, {stats.duplicates} duplicates, "
        f"{stats.dead_lettered} dead-lettered"
    )

