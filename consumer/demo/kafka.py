"""``metatrail demo --kafka BOOTSTRAP``: the same pipeline through a real broker.

Two background processes do the service side, as in a deployment: ``metatrail consume``
applies the events topic to the store (and relays the triggers the graph requests), and
``metatrail worker metatrail.consumer.demo.components`` runs the triggered steps. This process only
exports each day's data (its events go through Kafka too) and watches the store. Topics
get a fresh prefix per demo run, so nothing left on the broker by an earlier run can
trigger anything. The processes' logs go to ``<workspace>/logs/``; both are stopped
(SIGTERM, then killed after a grace period) when the demo ends, fails or is interrupted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from rich.console import Console
from sqlalchemy import func, select

from metatrail.consumer.demo import components, run_demo
from metatrail.consumer.demo.pipeline import STEPS
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.migrate import upgrade
from metatrail.consumer.store.models import StepRow
from metatrail.schemas.errors import MetatrailError

#: How long the worker's steps have been registered in the store by, at most.
STARTUP_TIMEOUT_S = 120.0
STOP_GRACE_S = 15.0


def _service_env(base: dict[str, str], bootstrap: str, prefix: str, store_url: str, spool: Path) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("METATRAIL_")}
    env.update(
        METATRAIL_TRANSPORT="kafka",
        METATRAIL_KAFKA_BOOTSTRAP=bootstrap,
        METATRAIL_KAFKA_TOPIC_PREFIX=prefix,
        METATRAIL_KAFKA_GROUP=f"{prefix}-group",
        METATRAIL_STORE_URL=store_url,
        METATRAIL_SPOOL_PATH=str(spool),
        # Short group timeouts: fast joins (some brokers hold a join for the whole
        # rebalance timeout); long enough for a training step between two polls.
        METATRAIL_KAFKA_MAX_POLL_INTERVAL_MS="20000",
        METATRAIL_KAFKA_SESSION_TIMEOUT_MS="10000",
        METATRAIL_KAFKA_HEARTBEAT_INTERVAL_MS="1000",
        METATRAIL_KAFKA_POLL_TIMEOUT_MS="200",
    )
    for key in ("kafka_security_protocol", "kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password",
                "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile"):
        name = "METATRAIL_" + key.upper()
        if name in base:  # the user's broker security settings apply to the services too
            env[name] = base[name]
    return env


def _registered_steps(store_url: str) -> int:
    engine = open_engine(store_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(
                select(func.count()).select_from(StepRow).where(StepRow.pipeline == components.PIPELINE)
            ).scalar_one())
    finally:
        engine.dispose()


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_demo_kafka(
    bootstrap: str, *, workspace: Path, framework: str, rows: int, console: Console, store_url: str
) -> None:
    """Run the demo through the broker at ``bootstrap`` (see module doc). Blocking; raises
    ``MetatrailError`` if the background services do not come up."""
    from metatrail import configure, flush

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    prefix = f"metatrail-demo-{stamp}"
    logs = workspace / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    engine = open_engine(store_url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    if framework == "auto":
        from metatrail.consumer.demo.model import keras_available

        framework = "keras" if keras_available() else "numpy"
    base = dict(os.environ)
    procs: list[subprocess.Popen[bytes]] = []
    commands = {
        "consume": [sys.executable, "-m", "metatrail", "consume"],
        "worker": [sys.executable, "-m", "metatrail", "worker", "metatrail.consumer.demo.components"],
    }
    try:
        for name, cmd in commands.items():
            env = _service_env(base, bootstrap, prefix, store_url, workspace / "spool" / f"{name}.db")
            env["DEMO_TRAINER"] = framework
            with (logs / f"{name}.log").open("ab") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            console.print(f"started [bold]metatrail {name}[/] (pid {procs[-1].pid}, log {logs / (name + '.log')})")
        configure(
            transport="kafka", kafka_bootstrap=bootstrap, kafka_topic_prefix=prefix, store_url=store_url,
            spool_path=workspace / "spool" / "demo.db",
        )
        console.print(f"waiting for the worker's steps to be registered (topics {prefix}.*)…")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while _registered_steps(store_url) < len(STEPS):
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                raise MetatrailError(f"a background service exited (code {dead[0].returncode}); see {logs}")
            if time.monotonic() > deadline:
                raise MetatrailError(f"the worker's steps were not registered within {STARTUP_TIMEOUT_S:g} s; see {logs}")
            time.sleep(0.5)
        result = run_demo(
            store_url=store_url, workspace=workspace, framework=framework, rows=rows, console=console,
            runner=lambda: (lambda: any(p.poll() is not None for p in procs)),
        )
        flush(timeout_s=30)
        if not result.ok:
            raise MetatrailError(f"some steps did not complete; see the logs in {logs}")
    finally:
        _stop(procs)
        console.print(f"stopped the background services; their logs: {logs}")
