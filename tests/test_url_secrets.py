"""The store URL's password is never shown: a password planted in the URL is grepped for
in everything the real paths print or log — the embedded transport in a user's program,
``metatrail flush``, ``ingest``, ``db upgrade``, ``ls`` and ``consume``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metatrail.consumer.cli import main
from metatrail.schemas.urls import mask_url, scrub

PLANTED = "Planted-s3cret"
#: Nothing listens on port 1: every path that opens the store fails, and says so.
DOWN_URL = f"postgresql+psycopg://postgres:{PLANTED}@127.0.0.1:1/nowhere"


@pytest.mark.parametrize(
    "url,shown",
    [
        ("postgresql+psycopg://u:pw@host:5432/db", "postgresql+psycopg://u:***@host:5432/db"),
        ("mysql+pymysql://root:p%40ss@h/db?charset=utf8mb4", "mysql+pymysql://root:***@h/db?charset=utf8mb4"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("mysql+pymysql://h/db?user=a&password=zz", "mysql+pymysql://h/db?user=a&password=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///.metatrail/metadata.db", "sqlite:///.metatrail/metadata.db"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_scrub_removes_the_password_as_written_and_decoded() -> None:
    url = "postgresql://u:p%40ss@h/db"
    assert scrub(f"failed for {url} with p@ss and p%40ss", url) == "failed for postgresql://u:***@h/db with *** and ***"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env.update(METATRAIL_STORE_URL=DOWN_URL, METATRAIL_SPOOL_PATH=str(tmp_path / "spool.db"),
               METATRAIL_EXIT_FLUSH_TIMEOUT_S="3")
    return env


def _run(args: list[str], tmp_path: Path, timeout_s: float = 120) -> str:
    done = subprocess.run(args, capture_output=True, timeout=timeout_s, cwd=tmp_path, env=_env(tmp_path))
    return (done.stdout + done.stderr).decode(errors="replace")


def test_the_embedded_transport_and_flush_never_show_the_password(tmp_path: Path) -> None:
    program = tmp_path / "train.py"
    program.write_text(
        "from metatrail import track\n"
        "@track\n"
        "def train(lr=0.1):\n"
        "    return lr\n"
        "train()\n"
    )
    shown = _run([sys.executable, str(program)], tmp_path)
    assert "cannot prepare the store postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere" in shown, shown
    assert PLANTED not in shown

    cli = [sys.executable, "-c", "from metatrail.consumer.cli import entrypoint; entrypoint()"]
    for extra in ([], ["--json"]):
        flushed = _run([*cli, "flush", "--timeout", "3", *extra], tmp_path)
        assert "cannot prepare the store" in flushed and "postgres:***@" in flushed, flushed
        assert PLANTED not in flushed
    assert PLANTED.encode() not in (tmp_path / "spool.db").read_bytes()


@pytest.mark.parametrize(
    "args",
    [
        ["ingest", "{file}", "--url", DOWN_URL],
        ["db", "upgrade", "--url", DOWN_URL],
        ["db", "reap", "--url", DOWN_URL],
        ["ls", "artifacts", "--url", DOWN_URL],
        ["ingest", "{file}", "--url", f"nosuchdriver://u:{PLANTED}@h/db"],
        ["ls", "artifacts", "--url", f"postgresql+psycopg://u:{PLANTED}@h:notaport/db"],
    ],
    ids=["ingest", "db-upgrade", "db-reap", "ls", "bad-driver", "bad-url"],
)
def test_cli_errors_never_show_the_password(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")
    code = main([a.replace("{file}", str(events)) for a in args])
    captured = capsys.readouterr()
    assert code == 1, captured
    assert captured.err.startswith("metatrail: error:") and captured.err.count("\n") == 1, captured.err
    assert PLANTED not in captured.out + captured.err + caplog.text


@pytest.mark.kafka
def test_consume_never_shows_the_password(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> None:
    from tests.fixtures.broker import kafka_test_settings, settings_env
    from tests.fixtures.service import pipeline_workload, publish_events

    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, DOWN_URL, db_retry_attempts=2)
    publish_events(kafka_bootstrap, settings.events_topic, pipeline_workload(runs=1).events)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env.update(settings_env(settings))
    done = subprocess.run(
        [sys.executable, "-c", "from metatrail.consumer.cli import entrypoint; entrypoint()", "consume", "-v"],
        capture_output=True, timeout=180, cwd=tmp_path, env=env,
    )
    shown = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 1, shown[-3000:]
    assert "into postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere" in shown
    assert PLANTED not in shown
