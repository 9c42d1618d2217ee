"""The spool and relay: durability across SIGKILL, `metatrail flush`, fork safety, the size
bound, strict mode, exit warning, settings errors."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import select as fd_select
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import metatrail
from metatrail.consumer.cli import main as cli_main
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import AppliedEventRow, ExecutionRow, MetricRow
from metatrail import Artifact, log_metric, run, track
from metatrail.producer import emitter, forkguard, journal
from metatrail.producer.spool import Spool, SpoolFullError
from metatrail.schemas.errors import ConfigError, MetatrailError

REPO = Path(__file__).resolve().parents[1]


def _env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env["PYTHONPATH"] = str(REPO)
    env.update({f"METATRAIL_{k.upper()}": v for k, v in settings.items()})
    return env


def _count(url: str, stmt: Any) -> int:
    engine = open_engine(url)
    try:
        with session_scope(engine, write=False) as s:
            return int(s.execute(stmt).scalar_one())
    finally:
        engine.dispose()


KILLED_SCRIPT = textwrap.dedent(
    """
    import sys
    from metatrail import track, run, log_metric, Artifact

    @track
    def step(i: int) -> Artifact:
        log_metric("loss", 1.0 / (i + 1), step=i)
        return Artifact(f"mem://out/{i}", type="Out")

    with run("killed"):
        i = 0
        while True:
            step(i)
            print(i, flush=True)
            i += 1
    """
)


@pytest.mark.slow
def test_sigkilled_process_leaves_events_that_flush_delivers_exactly_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    spool = tmp_path / "spool.db"
    env = _env(
        transport="embedded", store_url=url, spool_path=str(spool), relay_interval_ms="600000"
    )
    script = tmp_path / "train.py"
    script.write_text(KILLED_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script)], env=env, cwd=tmp_path, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        done = -1
        for line in proc.stdout:
            done = int(line)
            if done >= 50:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    journals = list((tmp_path / "spool.db.journal").glob("*.log"))
    written = [r[0] for p in journals for r in journal.read_from(p, 0)[0]]
    assert len(written) >= 4 * (done + 1)  # the events survived the kill

    for key, value in env.items():
        if key.startswith("METATRAIL_"):
            monkeypatch.setenv(key, value)
    assert cli_main(["flush", "--timeout", "60"]) == 0
    assert cli_main(["flush", "--json"]) == 0  # nothing left, nothing delivered twice
    assert not list((tmp_path / "spool.db.journal").glob("*.log"))

    applied = _count(url, select(func.count()).select_from(AppliedEventRow))
    assert applied == len(set(written)) == len(written)  # every event, once
    completed = _count(
        url, select(func.count()).select_from(ExecutionRow).where(ExecutionRow.state == "COMPLETE")
    )
    assert completed >= done + 1
    metrics = _count(url, select(func.count()).select_from(MetricRow))
    assert metrics == _count(url, select(func.count(func.distinct(MetricRow.step)))) >= done + 1


@track
def child_work(i: int) -> Artifact:
    log_metric("child", float(i))
    return Artifact(f"mem://child/{i}", type="Out")


def _noisy(stop: threading.Event) -> None:
    with run("noise"):
        while not stop.is_set():
            log_metric("noise", 1.0)


def test_forked_children_record_without_corrupting_or_deadlocking(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    metatrail.configure(
        transport="embedded",
        store_url=url,
        spool_path=tmp_path / "spool.db",
        strict=True,
        relay_interval_ms=20,
    )
    stop = threading.Event()
    noise = metatrail.Thread(target=_noisy, args=(stop,), daemon=True)
    noise.start()  # another thread keeps the spool and its locks busy while we fork
    try:
        with run("forked"):
            child_work(-1)
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(2) as pool:
                outputs = pool.map_async(child_work, range(8)).get(timeout=60)
        stop.set()
        noise.join(10)
        assert [a.uri for a in outputs] == [f"mem://child/{i}" for i in range(8)]
        assert metatrail.flush(60)
        # the children's journals are recovered once they are gone
        deadline = time.monotonic() + 30
        done_stmt = (
            select(func.count()).select_from(ExecutionRow).where(ExecutionRow.state == "COMPLETE")
        )
        while _count(url, done_stmt) < 9 and time.monotonic() < deadline:
            metatrail.flush(5)
        assert _count(url, done_stmt) == 9
        assert (
            _count(url, select(func.count()).select_from(MetricRow).where(MetricRow.key == "child"))
            == 9
        )
        with sqlite3.connect(tmp_path / "spool.db") as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        stop.set()
        emitter.shutdown(5)


def test_spool_full_policies_say_what_they_do(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = [(str(i).rjust(36, "0"), "k" * 36, b"x" * 2000) for i in range(50)]
    warn = Spool(tmp_path / "warn.db", max_bytes=10_000, full_policy="warn")
    with caplog.at_level(logging.WARNING, logger="metatrail.producer"):
        for r in records:
            warn.append([r])
        warn.ingest()
        warn.enforce_bound()
        warn.append([records[0]])
    assert (
        "over METATRAIL_SPOOL_MAX_BYTES=10000" in caplog.text and "still recording" in caplog.text
    )
    assert warn.pending() == 51  # nothing dropped
    warn.close()

    caplog.clear()
    drop = Spool(tmp_path / "drop.db", max_bytes=40_000, full_policy="drop_oldest")
    with caplog.at_level(logging.WARNING, logger="metatrail.producer"):
        for r in records:
            drop.append([r])
        drop.ingest()
        dropped = drop.enforce_bound()
    assert dropped > 0 and drop.stats()["dropped"] == dropped
    assert f"dropped the {dropped} oldest undelivered events" in caplog.text
    assert drop.read_batch(1)[0].event_id == records[dropped][0]  # the oldest went first
    drop.close()

    refuse = Spool(tmp_path / "raise.db", max_bytes=10_000, full_policy="raise")
    for r in records[:5]:  # 5 x 2 kB: the last one crosses the bound, and is kept
        refuse.append([r])
    with pytest.raises(SpoolFullError, match="over METATRAIL_SPOOL_MAX_BYTES"):
        refuse.append([records[11]])
    refuse.close()


def test_strict_mode_raises_and_default_mode_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metatrail.configure(transport="file", spool_path=tmp_path / "spool.db", strict=True)
    try:
        with pytest.raises(MetatrailError, match="outside a tracked call"):
            log_metric("orphan", 1.0)
        metatrail.configure(transport="file", spool_path=tmp_path / "spool.db", strict=False)
        with caplog.at_level(logging.ERROR, logger="metatrail.producer"):
            log_metric("orphan", 1.0)  # returns quietly
        assert "outside a tracked call" in caplog.text
    finally:
        emitter.shutdown(2)


def test_recording_errors_never_reach_user_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from metatrail.producer import recorder

    metatrail.configure(
        transport="file",
        spool_path=tmp_path / "spool.db",
        spool_max_bytes=1,
        spool_full_policy="raise",
    )
    try:
        emitter.get().spool._over = True  # full: every emit is refused

        @track
        def f(x: int) -> int:
            return x + 1

        with caplog.at_level(logging.ERROR, logger="metatrail.producer"):
            assert f(1) == 2
        assert "SpoolFullError" in caplog.text

        emitter.get().spool._over = False
        unnamed = track(name=b"not text")(f)  # type: ignore[arg-type]  # JSON cannot hold it
        with caplog.at_level(logging.ERROR, logger="metatrail.producer"):
            assert unnamed(2) == 3
            with run("r"):
                assert unnamed(3) == 4
                handle = recorder.start_execution("T", name=b"no")  # type: ignore[arg-type]
                handle.log_metric("m", 1.0)
                handle.complete()
        assert "TypeError" in caplog.text
    finally:
        emitter.shutdown(1)


def test_bad_settings_fail_at_configure_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigError, match="relay_batch_size"):
        metatrail.configure(relay_batch_size=0)
    monkeypatch.setenv("METATRAIL_TRANSPORT", "carrier-pigeon")
    with pytest.raises(ConfigError, match="METATRAIL_TRANSPORT"):
        metatrail.configure()
    monkeypatch.delenv("METATRAIL_TRANSPORT")
    with pytest.raises(ConfigError, match="METATRAIL_KAFKA_BOOTSTRAP"):
        metatrail.configure(transport="kafka")


def test_exit_warns_in_one_line_how_many_events_stay_spooled(tmp_path: Path) -> None:
    script = "from metatrail import run, log_metric\nwith run('r'):\n    [log_metric('m', i) for i in range(5)]\n"
    env = _env(
        transport="kafka",
        kafka_bootstrap="127.0.0.1:9",
        spool_path=str(tmp_path / "spool.db"),
        exit_flush_timeout_s="0.5",
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert out.returncode == 0
    lines = [ln for ln in out.stderr.decode().splitlines() if "remain spooled" in ln]
    assert lines == [
        f"metatrail: 7 events remain spooled in {tmp_path / 'spool.db'} after 0.5s; "
        "the next run or `metatrail flush` delivers them"
    ]


def test_a_call_is_in_the_journal_before_its_function_runs_and_before_it_returns(
    tmp_path: Path,
) -> None:
    metatrail.configure(
        transport="file",
        spool_path=tmp_path / "spool.db",
        file_path=tmp_path / "events.jsonl",
        strict=True,
    )
    spool = emitter.get().spool

    def journal_kinds() -> list[str]:
        # a fresh read of the file: what a SIGKILLed process would leave behind
        assert spool.writer.path is not None
        records, _, torn, _ = journal.read_from(spool.writer.path, 0)
        assert not torn
        return [json.loads(payload)["kind"] for _, _, payload in records]

    seen: list[list[str]] = []

    @track
    def train(data: Artifact, epochs: int = 2) -> Artifact:
        seen.append(journal_kinds())
        return Artifact("mem://model", type="Model")

    try:
        with run("durable"):
            train(Artifact("mem://data", type="Dataset"))
            after = journal_kinds()
        before = seen[0]
        assert before[-2:] == ["artifact.recorded", "execution.started"]
        assert after[len(before) :] == ["artifact.recorded", "execution.completed"]
    finally:
        emitter.shutdown(5)


def _in_forked_child(body: Callable[[], Any], timeout_s: float) -> tuple[int, Any]:
    """Fork; the child runs ``body`` and exits, handing back its JSON-ready result.
    Returns (child pid, result); fails the test if the child hangs or fails."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(body()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    return child, _child_report(child, read_end, timeout_s)


def _child_report(child: int, read_end: int, timeout_s: float) -> Any:
    """What a forked child wrote to ``read_end`` before exiting; kills it if it hangs."""
    with os.fdopen(read_end, "rb") as report:
        if not fd_select.select([report], [], [], timeout_s)[0]:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            pytest.fail(f"forked child {child} hung for {timeout_s}s")
        data = report.read()
    assert os.waitpid(child, 0)[1] == 0
    return json.loads(data)


def test_a_forked_child_signs_its_events_and_records_at_once_while_the_relay_works(
    tmp_path: Path,
) -> None:
    """Forks land while the parent's relay is busy in the spool's SQLite (rows waiting in
    the outbox, one event per batch: every cycle moves the journal into the table, reads,
    deletes). Each child's first call, which writes the spool's digest cache, and its flush
    return at once, and its events carry its own pid."""
    from metatrail.producer import recorder

    events_path = tmp_path / "events.jsonl"
    metatrail.configure(
        transport="file",
        spool_path=tmp_path / "spool.db",
        file_path=events_path,
        strict=True,
        relay_batch_size=1,
        relay_interval_ms=1,
    )

    @track
    def step(i: int) -> Artifact:
        out = tmp_path / f"out-{i}.bin"
        out.write_bytes(os.urandom(64))  # a new file: its digest is written to the spool
        return Artifact(str(out), type="Out")

    rounds, children = 12, []
    em = emitter.get()
    try:
        with run("forked"):
            em.use_journal = False  # the run's first events go straight to the outbox table,
            step(0)  # as after a failed delivery: the relay works from the table from now on
            em.use_journal = True
            outer = recorder.start_execution("Outer")  # started here, completed in a child
            for i in range(1, rounds + 1):
                for m in range(100):
                    log_metric("busy", float(m), step=m)  # a backlog for the relay
                time.sleep(0.0005 * i)  # forks at different points of its cycle

                def in_child(i: int = i) -> list[Any]:
                    began = time.perf_counter()
                    step(i)
                    call_s = time.perf_counter() - began
                    if i == 1:
                        outer.complete()
                    flushed = metatrail.flush(30)
                    return [call_s, time.perf_counter() - began - call_s, flushed]

                children.append(_in_forked_child(in_child, 90))
        assert metatrail.flush(60)
        for child, (call_s, flush_s, flushed) in children:
            assert flushed, child
            assert call_s < 1.0, (child, call_s)  # no wait on a lock inherited from the parent
            assert flush_s < 10.0, (child, flush_s)
        events = [json.loads(line) for line in events_path.read_text().splitlines()]
        pids = {
            (e["kind"], e.get("type")): e["producer"]["pid"]
            for e in events
            if e["kind"].startswith("execution.")
        }
        started = sorted(e["producer"]["pid"] for e in events if e["kind"] == "execution.started")
        assert started == sorted([os.getpid(), os.getpid()] + [c for c, _ in children])
        assert pids[("execution.completed", "Outer")] == children[0][0]
    finally:
        emitter.shutdown(5)


def test_forked_children_apply_to_the_embedded_store_while_the_parent_applies(tmp_path: Path) -> None:
    """The embedded transport applies into an SQLite store from the relay thread. Forks
    land while the parent's relay is inside an apply (a backlog of small batches); each
    child applies its own events into the same store file at once, and everything every
    process recorded is in the store."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    metatrail.configure(transport="embedded", store_url=url, spool_path=tmp_path / "spool.db",
                       relay_batch_size=20, relay_interval_ms=1)

    @track
    def step(i: int) -> int:
        return i

    rounds, children = 12, []
    try:
        with run("forked-embedded"):
            step(0)
            assert metatrail.flush(30)  # the store exists, its engine has pooled connections
            for i in range(1, rounds + 1):
                for m in range(200):
                    log_metric("busy", float(m), step=m)  # batches for the relay to apply
                time.sleep(0.001 * i)  # forks at different points of its cycle

                def in_child(i: int = i) -> list[Any]:
                    began = time.perf_counter()
                    step(i)
                    flushed = metatrail.flush(30)
                    return [time.perf_counter() - began, flushed]

                children.append(_in_forked_child(in_child, 60))
        assert metatrail.flush(60)
        for child, (took_s, flushed) in children:
            assert flushed, child
            assert took_s < 10.0, (child, took_s)  # no wait on SQLite state inherited mid-apply
        done = _count(url, select(func.count()).select_from(ExecutionRow).where(ExecutionRow.state == "COMPLETE"))
        assert done == rounds + 1
        assert _count(url, select(func.count()).select_from(MetricRow)) == rounds * 200
    finally:
        emitter.shutdown(5)


def _fork_and_reap() -> float:
    """Seconds from ``os.fork()`` in the parent to the child's exit."""
    began = time.perf_counter()
    child = os.fork()
    if child == 0:
        os._exit(0)
    assert os.waitpid(child, 0)[1] == 0
    return time.perf_counter() - began


def test_a_fork_never_deadlocks_on_the_spool_guard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No relay at all, a fork from inside a guarded spool call (the relay thread forking),
    and a statement that does not end: none of them holds a fork up for long."""
    spool = Spool(tmp_path / "spool.db")
    # A fork that waited for a guard takes at least FORK_WAIT_S; a plain fork and reap of
    # this (large) test process takes well under it, though up to a second on a busy machine.
    no_wait = forkguard.FORK_WAIT_S
    try:
        assert _fork_and_reap() < no_wait
        assert forkguard.spool_guard(_fork_and_reap)() < no_wait
        monkeypatch.setattr(forkguard, "FORK_WAIT_S", 0.2)
        inside, release = threading.Event(), threading.Event()

        @forkguard.spool_guard
        def stuck() -> None:
            spool.own_rows()
            inside.set()
            release.wait(30)

        holder = threading.Thread(target=stuck)
        holder.start()
        assert inside.wait(10)
        waited = _fork_and_reap()
        release.set()
        holder.join(10)
        assert 0.2 <= waited < 5.0
        assert _fork_and_reap() < no_wait  # the guard is free again in the parent
        assert not spool.own_rows()
    finally:
        spool.close()


def test_journal_detects_a_torn_tail() -> None:
    data = journal.encode([("a" * 36, "b" * 36, b'{"x":1}'), ("c" * 36, "d" * 36, b'{"y":2}')])
    records, used, torn, damaged = journal.decode(data[:-3])
    assert [r[0] for r in records] == ["a" * 36] and torn and used < len(data) and not damaged
    records, used, torn, damaged = journal.decode(data)
    assert len(records) == 2 and not torn and used == len(data) and not damaged
    records, used, torn, damaged = journal.decode(data[:-3], final=True)  # its writer is gone
    assert len(records) == 1 and not torn and used == len(data) - 3 and len(damaged) == 1


def test_journal_reads_in_batches_a_frame_larger_than_a_batch_included(tmp_path: Path) -> None:
    sizes = [10 + (i * 37) % 3000 + (200_000 if i == 5 else 0) for i in range(300)]
    records = [(f"{i:036d}", "k" * 36, b"x" * size) for i, size in enumerate(sizes)]
    data = journal.encode(records)
    path = tmp_path / "j.log"
    path.write_bytes(data)
    offset, got = 0, []
    while True:
        found, offset, torn, damaged = journal.read_from(path, offset, 7, len(data))
        assert not torn and not damaged and len(found) <= 7
        if not found:
            break
        got += found
    assert got == records and offset == len(data)
    path.write_bytes(data[:-5])  # a torn tail is still reported as one
    last = len(data) - len(journal.encode(records[-1:]))
    assert journal.read_from(path, last, 7) == ([], last, True, [])


def test_public_api() -> None:
    assert set(metatrail.__all__) >= {
        "track",
        "run",
        "log_artifact",
        "log_metric",
        "log_metrics",
        "log_params",
        "Artifact",
        "Dataset",
        "Model",
        "Metrics",
        "Schema",
        "Statistics",
        "configure",
        "flush",
        "propagate",
        "Thread",
        "step",
        "latest",
    }
    for name in metatrail.__all__:
        assert getattr(metatrail, name) is not None


def test_hot_path_events_serialize_exactly_like_the_contract() -> None:
    from metatrail.producer.build import build, record
    from metatrail.schemas import dump_event, parse_event
    from metatrail.schemas.events import ExecutionCompleted
    from metatrail.schemas.ids import new_id

    event = build(ExecutionCompleted, execution_id=new_id(), type="t", run_id=new_id())
    event_id, key, payload = record(event)
    assert payload == dump_event(parse_event(payload))  # same bytes as the contract writes
    assert event_id == str(event.event_id) and key == str(event.run_id)


def test_parameters_are_summarised_json_safe() -> None:
    import numpy as np

    from metatrail.producer.capture import MAX_STRING_CHARS, summarise

    assert summarise(np.zeros((3, 4), dtype="float32")) == {
        "type": "ndarray",
        "shape": [3, 4],
        "dtype": "float32",
    }
    long = summarise("x" * 5000)
    assert (
        len(long) < 5000
        and long.startswith("x" * MAX_STRING_CHARS)
        and long.endswith("[5000 chars]")
    )
    assert summarise({"a": [1, 2.5, None, float("nan")], "b": object()})["a"] == [
        1,
        2.5,
        None,
        "nan",
    ]
    assert summarise(list(range(10_000))) == {"type": "list", "len": 10_000}
    json.dumps(summarise({"nested": {"deep": {"deeper": {"deepest": {"bottom": [object()]}}}}}))
