"""A full spool disk (a small tmpfs mounted by the test) loses nothing recorded after space
returns, says what it could not record, reports the real cause, and `metatrail flush`
keeps a journal it could not read. Also: a read-only spool is one line of error."""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

import metatrail
from metatrail import track
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import AppliedEventRow, ExecutionRow
from metatrail.producer import emitter

REPO = Path(__file__).resolve().parents[1]


def _mount(point: Path, size: str) -> None:
    point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = done.stderr.strip()
        pytest.skip(f"cannot mount a tmpfs for the disk-full test (needs root): {reason}")


def _unmount(point: Path) -> None:
    subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs (room for the spool and its WAL), mounted for this test only."""
    point = tmp_path / "disk"
    _mount(point, "16m")
    try:
        yield point
    finally:
        _unmount(point)


def fill(disk: Path) -> Path:
    """Write a file until the disk refuses another byte; returns it (delete it to free)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 1):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break
    finally:
        os.close(fd)
    return filler


@track
def work(i: int) -> int:
    return i


def _count(url: str, stmt: object) -> int:
    engine = open_engine(url)
    try:
        with session_scope(engine, write=False) as s:
            return int(s.execute(stmt).scalar_one())  # type: ignore[call-overload]
    finally:
        engine.dispose()


def test_after_a_full_disk_every_later_event_is_delivered_and_the_lost_ones_are_reported(
    small_disk: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"  # the store is on another disk
    metatrail.configure(
        transport="embedded", store_url=url, spool_path=small_disk / "spool.db",
        relay_interval_ms=20,
    )
    try:
        for i in range(20):
            work(i)
        assert metatrail.flush(30)
        filler = fill(small_disk)
        with caplog.at_level(logging.ERROR, logger="metatrail.producer"):
            for i in range(100, 160):
                work(i)  # never raises into user code
        lost = emitter.get().spool.lost
        assert lost > 0, "the disk was not full: the test proves nothing"
        assert "not recorded" in caplog.text and "No space left" in caplog.text
        with caplog.at_level(logging.WARNING, logger="metatrail.producer"):
            assert not metatrail.flush(2)  # some events could not be recorded: it says so
        assert f"{lost} event(s) could not be written to the spool" in caplog.text
        filler.unlink()  # space returns

        for i in range(1000, 1040):
            work(i)
        assert metatrail.flush(30), caplog.text
        applied = _count(url, select(func.count()).select_from(AppliedEventRow))
        # every event recorded after space returned is in the store, and of those recorded
        # while the disk was full, each was either delivered or counted as lost (2 per call)
        assert applied + lost == 2 * (20 + 60 + 40)
        assert emitter.get().spool.lost == lost  # nothing lost once space returned
        complete = select(func.count()).select_from(ExecutionRow).where(
            ExecutionRow.state == "COMPLETE"
        )
        assert _count(url, complete) >= 20 + 40
    finally:
        emitter.shutdown(5)


def test_a_full_spool_disk_reports_its_real_cause(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file transport writes to the same full disk: delivery fails, the relay moves the
    journal into the spool's SQLite table, which fails too; the error names the cause."""
    out = small_disk / "events.jsonl"
    metatrail.configure(
        transport="file", file_path=out, spool_path=small_disk / "spool.db", relay_interval_ms=20
    )
    try:
        work(0)
        assert metatrail.flush(30)
        filler = fill(small_disk)
        with caplog.at_level(logging.WARNING, logger="metatrail.producer"):
            for i in range(1, 40):
                work(i)
            metatrail.flush(3)
        messages = [r.getMessage() for r in caplog.records]
        relay_errors = [m for m in messages if "cannot deliver" in m]
        assert relay_errors, caplog.text
        assert not any("cannot rollback" in m for m in relay_errors), relay_errors
        assert any("full" in m or "No space" in m for m in relay_errors), relay_errors
        filler.unlink()
        for i in range(1000, 1020):
            work(i)
        assert metatrail.flush(30)
        lines = out.read_text().splitlines()
        ids = {line.split('"event_id":"')[1][:36] for line in lines}
        assert len(ids) + emitter.get().spool.lost == 2 * 60
    finally:
        emitter.shutdown(5)


KILLED_WHILE_FULL = textwrap.dedent(
    """
    import sys
    from metatrail import track

    @track
    def step(i):
        return i

    for i in range(200):
        step(i)
    print("recorded", flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


def test_flush_keeps_a_journal_it_cannot_read_into_a_full_spool_and_says_so(
    small_disk: Path, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env.update(
        PYTHONPATH=str(REPO),
        METATRAIL_STORE_URL=url,
        METATRAIL_SPOOL_PATH=str(small_disk / "spool.db"),
        METATRAIL_RELAY_INTERVAL_MS="600000",
    )
    script = tmp_path / "train.py"
    script.write_text(KILLED_WHILE_FULL)
    with subprocess.Popen(
        [sys.executable, str(script)], env=env, cwd=tmp_path, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline() == b"recorded\n"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    [journal_file] = (small_disk / "spool.db.journal").glob("*.log")
    filler = fill(small_disk)
    flush = [sys.executable, "-m", "metatrail", "flush", "--timeout", "5"]
    full = subprocess.run(flush, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert full.returncode == 1, full.stdout + full.stderr
    assert journal_file.exists()  # not deleted: it could not be moved into the spool
    assert "Traceback" not in full.stderr
    said = full.stdout + full.stderr
    assert "cannot rollback" not in said and ("full" in said or "disk I/O" in said), said
    filler.unlink()
    done = subprocess.run(flush, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not journal_file.exists()
    assert _count(url, select(func.count()).select_from(AppliedEventRow)) == 400


def test_flush_on_a_read_only_spool_is_one_line(tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    _mount(disk, "1m")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
        env.update(PYTHONPATH=str(REPO), METATRAIL_SPOOL_PATH=str(disk / "spool.db"),
                   METATRAIL_STORE_URL=f"sqlite:///{tmp_path / 'store.db'}",
                   METATRAIL_RELAY_INTERVAL_MS="600000")
        record = (
            "import os\nfrom metatrail import track\n@track\ndef f(i): return i\n"
            "[f(i) for i in range(3)]\nos._exit(0)\n"  # dies with its events in the journal
        )
        subprocess.run([sys.executable, "-c", record], env=env, cwd=tmp_path, check=True,
                       timeout=60, capture_output=True)
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        out = subprocess.run([sys.executable, "-m", "metatrail", "flush"], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 1
        lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("metatrail: error: cannot flush the spool")
        assert str(disk / "spool.db") in lines[0]
    finally:
        _unmount(disk)
