"""Secrets: values whose names look secret are recorded as "***" (flagged, never the
value) everywhere the producer types values, so no log, spool, journal or store (on each
backend) holds them; the files holding recorded data are 0600 in 0700 folders."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

import metatrail
from metatrail import Artifact, Store, log_artifact, log_params, run, track
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import Base
from metatrail.producer import emitter
from metatrail.schemas.errors import ConfigError

#: Planted values: none may be found anywhere but in this test's memory.
SECRETS = {
    "default": "pw-default-7f3a9c",
    "token": "tok-live-51b2e8",
    "hf": "hf_AbCdEf123456",
    "logged": "aws-8d1e4b2c",
    "run": "run-pk-0c9d77",
    "context": "ctx-cred-4e6f01",
    "artifact": "art-apikey-99aa10",
    "custom": "art-passwd-13fe57",
    "nested": "nested-pw-6b6b21",
}


@track
def connect(
    host: str,
    api_token: str,
    HF_TOKEN: str | None = None,  # noqa: N803  (as users name environment-like values)
    config: dict[str, Any] | None = None,
    db_password: str = SECRETS["default"],
) -> None:
    log_params({"AWS_SECRET_ACCESS_KEY": SECRETS["logged"], "region": "eu"})
    raise PermissionError(f"login to {host} refused for token {api_token} / {db_password}")


def _record() -> None:
    with run("secrets", properties={"private_key": SECRETS["run"], "owner": "ml"}):
        log_params({"credential": SECRETS["context"], "lr": 0.1})
        with pytest.raises(PermissionError):
            connect(
                "db.internal",
                SECRETS["token"],
                HF_TOKEN=SECRETS["hf"],
                config={"db": {"Password": SECRETS["nested"], "port": 5432}},
            )
        log_artifact(
            Artifact(
                "mem://model",
                properties={"apikey": SECRETS["artifact"], "size": 3},
                custom_properties={"Passwd": SECRETS["custom"]},
            )
        )


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _store_text(url: str) -> str:
    engine = open_engine(url)
    try:
        with session_scope(engine, write=False) as s:
            rows = [
                repr(tuple(row))
                for table in Base.metadata.sorted_tables
                for row in s.execute(select(table))
            ]
        return "\n".join(rows)
    finally:
        engine.dispose()


def _leaks(haystack: bytes | str) -> list[str]:
    data = haystack.encode() if isinstance(haystack, str) else haystack
    return [name for name, value in SECRETS.items() if value.encode() in data]


def test_planted_secrets_reach_no_log_spool_journal_or_store(
    store_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir = tmp_path / "spool"
    caplog.set_level(logging.DEBUG)
    # the relay waits: the journal still holds every event when it is read below
    metatrail.configure(
        store_url=store_url, spool_path=spool_dir / "spool.db", relay_interval_ms=600_000
    )
    try:
        _record()
        before = _files(spool_dir)
        assert any(name.endswith(".log") for name in before)  # the journal was read
        assert metatrail.flush(60)
        after = _files(spool_dir)
    finally:
        emitter.shutdown(5)
    for name, data in {**before, **after}.items():
        assert not _leaks(data), f"{name} holds {_leaks(data)}"
    assert not _leaks(caplog.text)
    assert not _leaks(_store_text(store_url))
    if store_url.startswith("sqlite"):
        assert not _leaks(Path(store_url.removeprefix("sqlite:///")).read_bytes())

    # what the user sees instead: the mark, and which names were withheld
    with Store.open(store_url) as store:
        [execution] = store.executions().items
        assert execution.state == "FAILED"
        assert execution.properties["api_token"] == "***"
        assert execution.properties["db_password"] == "***"  # a default
        assert execution.properties["AWS_SECRET_ACCESS_KEY"] == "***"  # log_params
        assert execution.properties["config"] == {"db": {"Password": "***", "port": 5432}}
        assert execution.properties["host"] == "db.internal"
        assert execution.custom_properties["redacted"] == sorted(
            ["AWS_SECRET_ACCESS_KEY", "HF_TOKEN", "api_token", "config.db.Password", "db_password"]
        )
        assert execution.error_message == "login to db.internal refused for token *** / ***"
        [artifact] = store.artifacts().items
        assert artifact.properties == {"apikey": "***", "size": 3}
        assert artifact.custom_properties["Passwd"] == "***"
        assert artifact.custom_properties["redacted"] == ["Passwd", "apikey"]


@track
def login(session_id: str, lr: float, db_password: str) -> None:
    pass


def _parameters(path: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [
        {k: v["value"] for k, v in e["parameters"].items()}
        for e in events
        if e["kind"] == "execution.started"
    ]


def test_redaction_is_configurable_and_off_records_values(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    try:
        metatrail.configure(transport="file", spool_path=tmp_path / "spool.db", file_path=out,
                            redact="SESSION, lr")
        login("s-1", 0.1, "pw-1")
        metatrail.configure(transport="file", spool_path=tmp_path / "spool.db", file_path=out,
                            redact="off")
        login("s-2", 0.2, "pw-2")
        assert metatrail.flush(30)
    finally:
        emitter.shutdown(2)
    assert _parameters(out) == [
        {"session_id": "***", "lr": "***", "db_password": "pw-1"},  # the words given, only
        {"session_id": "s-2", "lr": 0.2, "db_password": "pw-2"},  # off: every value
    ]
    with pytest.raises(ConfigError, match="METATRAIL_REDACT"):
        metatrail.configure(redact=" , ")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_spool_and_jsonl_files_are_private(tmp_path: Path) -> None:
    # zero configuration: the embedded store and the spool under .metatrail/
    metatrail.configure(relay_interval_ms=600_000)
    try:
        _record()
        journals = list(Path(".metatrail/spool.db.journal").glob("*.log"))
        assert journals and all(_mode(p) == 0o600 for p in journals)
        assert _mode(Path(".metatrail/spool.db.journal")) == 0o700
        assert metatrail.flush(60)
        meta = Path(".metatrail")
        assert _mode(meta) == 0o700
        for name in ("metadata.db", "metadata.db-wal", "metadata.db-shm",
                     "spool.db", "spool.db-wal", "spool.db-shm"):
            assert _mode(meta / name) == 0o600, name
        metatrail.configure(transport="file", file_path=tmp_path / "out" / "events.jsonl")
        _record()
        assert metatrail.flush(30)
        assert _mode(tmp_path / "out" / "events.jsonl") == 0o600
        assert _mode(tmp_path / "out") == 0o700
        assert not _leaks((tmp_path / "out" / "events.jsonl").read_bytes())
    finally:
        emitter.shutdown(5)
