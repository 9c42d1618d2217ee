"""Calls killed mid-flight do not stay RUNNING forever: ``ls``/``show`` say they are stale
(their process is gone, or they have been silent too long), and ``metatrail db reap``
closes them as FAILED with reason "abandoned", through events, on every backend."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from metatrail.consumer.apply import apply_events
from metatrail.consumer.cli import main
from metatrail.consumer.store.engine import open_engine
from metatrail.schemas import ExecutionCompleted, ExecutionStarted, MetricPoint, MetricsLogged, ProducerInfo, new_id


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> Any:
    assert main(list(args)) == 0
    out = capsys.readouterr().out
    return json.loads(out) if "--json" in args else out


def _apply(url: str, events: list[Any]) -> None:
    engine = open_engine(url)
    try:
        apply_events(engine, events)
    finally:
        engine.dispose()


def test_a_killed_call_is_shown_stale_and_reaped_as_abandoned(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "killed.py"
    script.write_text(
        "import os, signal, metatrail\n"
        "from metatrail import track\n"
        f"metatrail.configure(store_url={store_url!r}, spool_path={str(tmp_path / 'spool.db')!r})\n"
        "@track(type='LongTrain')\n"
        "def train():\n"
        "    assert metatrail.flush(60), 'started event not delivered'\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "train()\n"
    )
    child = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=180, cwd=tmp_path)
    assert child.returncode == -9, child.stderr.decode(errors="replace")[-2000:]

    [listed] = _cli(capsys, "ls", "executions", "--url", store_url, "--json")["items"]
    assert listed["state"] == "RUNNING" and listed["producer_host"] == socket.gethostname()
    assert "is gone" in listed["stale"] and str(listed["producer_pid"]) in listed["stale"]
    assert "(stale)" in _cli(capsys, "ls", "executions", "--url", store_url)
    shown = _cli(capsys, "show", listed["id"], "--url", store_url, "--json")
    assert shown["stale"] == listed["stale"]

    dry = _cli(capsys, "db", "reap", "--dry-run", "--url", store_url, "--json")
    assert [e["id"] for e in dry["executions"]] == [listed["id"]] and dry["applied"] == 0
    assert _cli(capsys, "show", listed["id"], "--url", store_url, "--json")["state"] == "RUNNING"

    reaped = _cli(capsys, "db", "reap", "--url", store_url, "--json")
    assert [e["id"] for e in reaped["executions"]] == [listed["id"]] and reaped["applied"] == 1
    closed = _cli(capsys, "show", listed["id"], "--url", store_url, "--json")
    assert (closed["state"], closed["error_type"], closed["stale"]) == ("FAILED", "Abandoned", None)
    assert closed["error_message"].startswith("abandoned: its process")
    assert closed["ended_at"] == listed["last_event_at"]
    assert _cli(capsys, "db", "reap", "--url", store_url, "--json")["executions"] == []  # idempotent

    # a producer that was alive after all: its real end, later than the last event seen, wins
    _apply(store_url, [ExecutionCompleted(execution_id=UUID(listed["id"]))])
    assert _cli(capsys, "show", listed["id"], "--url", store_url, "--json")["state"] == "COMPLETE"


def test_a_running_call_of_a_live_process_is_not_stale(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    xid = new_id()
    _apply(store_url, [ExecutionStarted(execution_id=xid, type="Train", producer=ProducerInfo.current())])
    shown = _cli(capsys, "show", str(xid), "--url", store_url, "--json")
    assert shown["state"] == "RUNNING" and shown["stale"] is None
    assert _cli(capsys, "db", "reap", "--url", store_url, "--json")["executions"] == []


def test_a_reused_pid_does_not_keep_an_execution_alive(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The pid runs, but a process started after the execution: not the producer."""
    newer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        xid = new_id()
        producer = ProducerInfo(host=socket.gethostname(), pid=newer.pid, sdk_version="0")
        _apply(store_url, [ExecutionStarted(execution_id=xid, type="Train", producer=producer,
                                            occurred_at=datetime.now(timezone.utc) - timedelta(hours=1))])
        shown = _cli(capsys, "show", str(xid), "--url", store_url, "--json")
        assert f"its process {newer.pid}" in shown["stale"]
    finally:
        newer.kill()
        newer.wait()


def test_a_silent_call_on_another_host_is_stale_after_the_configured_time(
    store_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(timezone.utc)
    xid = new_id()
    elsewhere = ProducerInfo(host="another-host.example", pid=1234, sdk_version="0")
    _apply(store_url, [
        ExecutionStarted(execution_id=xid, type="Train", producer=elsewhere, occurred_at=now - timedelta(hours=3)),
        MetricsLogged(execution_id=xid, occurred_at=now - timedelta(hours=2),
                      points=[MetricPoint(key="loss", value=0.1, timestamp=now - timedelta(hours=2))]),
    ])
    shown = _cli(capsys, "show", str(xid), "--url", store_url, "--json")
    assert shown["stale"] is None  # two hours of silence: under the default of a day
    assert datetime.fromisoformat(shown["last_event_at"]) == now - timedelta(hours=2)  # its metrics count
    monkeypatch.setenv("METATRAIL_EXECUTION_STALE_AFTER_S", "3600")
    assert _cli(capsys, "show", str(xid), "--url", store_url, "--json")["stale"].startswith("no event for 2h")
    assert _cli(capsys, "db", "reap", "--older-than", "3h", "--url", store_url, "--json")["executions"] == []
    reaped = _cli(capsys, "db", "reap", "--older-than", "90m", "--url", store_url, "--json")
    assert [e["id"] for e in reaped["executions"]] == [str(xid)] and reaped["stale_after_s"] == 5400
    assert _cli(capsys, "show", str(xid), "--url", store_url, "--json")["state"] == "FAILED"


def test_reap_rejects_a_bad_duration(capsys: pytest.CaptureFixture[str], sqlite_url: str) -> None:
    assert main(["db", "reap", "--older-than", "soon", "--url", sqlite_url]) == 2
    assert "not a duration" in capsys.readouterr().err
