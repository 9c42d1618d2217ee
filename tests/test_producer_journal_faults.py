"""The journal under damage, through the SDK and `metatrail flush`: one flipped byte loses
only its frame (the rest is delivered, the damage moved to ``spool.corrupt``, the exit
status says so); journals of the older frame format are still read; frames are found again
after a torn write in the middle of a file."""

from __future__ import annotations

import logging
import os
import stat
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from metatrail.consumer.cli import main as cli_main
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import AppliedEventRow
from metatrail.producer import journal

REPO = Path(__file__).resolve().parents[1]

#: Records 2,000 events (run opened, 1,998 metrics, run closed), then dies without flushing.
RECORD_AND_DIE = textwrap.dedent(
    """
    import os
    from metatrail import log_metric, run

    with run("damaged"):
        for i in range(1998):
            log_metric("loss", 1.0 / (i + 1), step=i)
    os._exit(0)
    """
)


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env["PYTHONPATH"] = str(REPO)
    env.update({f"METATRAIL_{k.upper()}": v for k, v in settings.items()})
    return env


def _applied_ids(url: str) -> set[str]:
    engine = open_engine(url)
    try:
        with session_scope(engine, write=False) as s:
            return {str(e) for e in s.scalars(select(AppliedEventRow.event_id))}
    finally:
        engine.dispose()


def _use(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for key, value in env.items():
        if key.startswith("METATRAIL_"):
            monkeypatch.setenv(key, value)


def _record_and_die(tmp_path: Path, env: dict[str, str]) -> Path:
    script = tmp_path / "record.py"
    script.write_text(RECORD_AND_DIE)
    subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, check=True, timeout=120)
    [found] = (tmp_path / "spool.db.journal").glob("*.log")
    return found


def test_a_flipped_byte_loses_only_its_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = _env(
        tmp_path,
        transport="embedded",
        store_url=url,
        spool_path=str(tmp_path / "spool.db"),
        relay_interval_ms="600000",  # the relay sends once, at the first event, then sleeps
    )
    path = _record_and_die(tmp_path, env)
    data = path.read_bytes()
    frames = journal.decode(data)[0]
    assert len(frames) == 2000
    # flip one byte at 10 % of the file: the frame holding it is the one to lose
    at = len(data) // 10
    bounds, pos = [], 0
    for _, _, payload in frames:
        size = journal.HEADER.size + 2 * journal.ID_BYTES + len(payload)
        bounds.append((pos, pos + size))
        pos += size
    [hit] = [i for i, (a, b) in enumerate(bounds) if a <= at < b]
    damaged = bytearray(data)
    damaged[at] ^= 0x5A
    path.write_bytes(bytes(damaged))

    _use(monkeypatch, env)
    caplog.set_level(logging.WARNING, "metatrail.producer")
    assert cli_main(["flush", "--timeout", "60"]) == 1  # something was left behind

    applied = _applied_ids(url)
    everything = {event_id for event_id, _, _ in frames}
    assert applied == everything - {frames[hit][0]}  # 1,999: all but the damaged frame
    corrupt = tmp_path / "spool.corrupt"
    a, b = bounds[hit]
    assert bytes(damaged[a:b]) in corrupt.read_bytes()  # kept aside, byte for byte
    assert stat.S_IMODE(corrupt.stat().st_mode) == 0o600
    warnings = [r.getMessage() for r in caplog.records if "damaged region" in r.getMessage()]
    assert len(warnings) == 1
    assert "1 damaged region(s)" in warnings[0] and "about 1 event(s)" in warnings[0]
    assert str(corrupt) in warnings[0]
    assert not list((tmp_path / "spool.db.journal").glob("*.log"))  # fully read, then deleted
    assert cli_main(["flush"]) == 0  # nothing left: a second flush has nothing to say


def test_a_damaged_frame_at_the_end_of_a_dead_writers_journal_is_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = _env(
        tmp_path,
        transport="embedded",
        store_url=url,
        spool_path=str(tmp_path / "spool.db"),
        relay_interval_ms="600000",
    )
    path = _record_and_die(tmp_path, env)
    data = path.read_bytes()
    frames = journal.decode(data)[0]
    path.write_bytes(data[:-10])  # the last frame torn
    _use(monkeypatch, env)
    assert cli_main(["flush", "--json"]) == 1
    out = capsys.readouterr().out
    assert '"damaged_regions": 1' in out and "spool.corrupt" in out
    assert _applied_ids(url) == {event_id for event_id, _, _ in frames[:-1]}


def _legacy(records: list[tuple[str, str, bytes]]) -> bytes:
    """Frames as journals were written before frames had a magic."""
    out = b""
    for event_id, key, payload in records:
        body = event_id.encode() + key.encode().ljust(journal.ID_BYTES) + payload
        out += struct.pack("<II", len(body), zlib.crc32(body)) + body
    return out


def test_journals_of_the_older_frame_format_are_still_delivered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    env = _env(
        tmp_path,
        transport="embedded",
        store_url=url,
        spool_path=str(tmp_path / "spool.db"),
        relay_interval_ms="600000",
    )
    path = _record_and_die(tmp_path, env)
    frames = journal.decode(path.read_bytes())[0]
    path.write_bytes(_legacy(frames))  # as an older version would have left it
    _use(monkeypatch, env)
    assert cli_main(["flush"]) == 0
    assert _applied_ids(url) == {event_id for event_id, _, _ in frames}


def _records(n: int, tag: str) -> list[tuple[str, str, bytes]]:
    return [(f"{tag}{i:035d}", "k" * 36, b'{"i":%d}' % i) for i in range(n)]


def test_decode_resynchronises_after_damage_of_any_kind() -> None:
    good = _records(5, "a")
    data = journal.encode(good)
    size = len(journal.encode(good[:1]))
    cases: dict[str, Any] = {
        "magic": lambda b: b[: 2 * size] + b"X" + b[2 * size + 1 :],
        "length": lambda b: b[: 2 * size + 4] + b"\xff\xff\xff\x7f" + b[2 * size + 8 :],
        "crc": lambda b: b[: 2 * size + 8] + b"\x00\x00\x00\x00" + b[2 * size + 12 :],
        "body": lambda b: b[: 3 * size - 2] + b"#" + b[3 * size - 1 :],
        "torn write": lambda b: b[: 2 * size + 30] + b[2 * size :],  # a short write, then more
    }
    for name, damage in cases.items():
        found = journal.decode(damage(data))
        lost = {r[0] for r in good} - {r[0] for r in found.records}
        assert len(found.records) >= 4 and len(lost) <= 1, name
        assert len(found.damaged) == 1 and not found.torn, name
