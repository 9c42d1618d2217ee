"""Tokens: scopes nest (read < write < admin), unknown and revoked tokens are refused,
a server open on loopback closes as soon as a token exists, the CLI creates, lists and
revokes, and only hashes are stored."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
from sqlalchemy import select

from metatrail.consumer.cli import main
from metatrail.consumer.server.runner import check_exposure, is_loopback
from metatrail.consumer.server.tokens import create_token, revoke_token
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import TokenRow
from metatrail.schemas.errors import ConfigError
from tests.fixtures.server import LiveServer


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"] if response.status_code >= 400 else ""


def test_scopes_unknown_and_revoked_tokens(live_server: LiveServer, store_url: str) -> None:
    engine = open_engine(store_url)
    try:
        with live_server.client() as anonymous:
            assert anonymous.get("/artifacts").status_code == 200  # no token yet: open on loopback
            read, read_info = create_token(engine, "read", "dashboards")
            write, _ = create_token(engine, "write")
            admin, _ = create_token(engine, "admin")
            assert code(anonymous.get("/artifacts")) == (401, "unauthorized")
            assert anonymous.get("/artifacts").headers["www-authenticate"] == "Bearer"
            assert anonymous.get("/healthz").status_code == 200  # probes stay open
        with live_server.client(read) as api:
            assert api.get("/artifacts").status_code == 200
            assert code(api.post("/events", content=b"")) == (403, "forbidden")
            assert code(api.post("/dead-letters/replay", json={})) == (403, "forbidden")
        with live_server.client(write) as api:
            assert api.post("/events", content=b"").json()["received"] == 0
            assert code(api.get("/tokens")) == (403, "forbidden")
        with live_server.client(admin) as api:
            assert api.post("/dead-letters/replay", json={}).json() == {"outcomes": []}
            created = api.post("/tokens", json={"scope": "read", "name": "ci"})
            assert created.status_code == 201 and created.json()["token"].startswith("mt_")
            listed = api.get("/tokens").json()["items"]
            assert {t["name"] for t in listed} >= {"dashboards", "ci"}
            assert all("token" not in t and "token_hash" not in t for t in listed)
        with live_server.client("mt_not-a-token") as api:
            assert code(api.get("/artifacts")) == (401, "unauthorized")
        with live_server.client() as api:
            assert code(api.get("/artifacts", headers={"Authorization": "Basic abc"})) == (401, "unauthorized")
        revoke_token(engine, read_info.id[:-4])
        with live_server.client(read) as api:
            assert code(api.get("/artifacts")) == (401, "unauthorized")
        with live_server.client(admin) as api:
            assert api.delete(f"/tokens/{read_info.id}").json()["revoked_at"] is not None  # idempotent
        with session_scope(engine, write=False) as s:
            hashes = set(s.scalars(select(TokenRow.token_hash)))
        assert hashlib.sha256(read.encode()).hexdigest() in hashes
        assert not {read, write, admin} & hashes
    finally:
        engine.dispose()


def test_a_server_not_open_without_tokens_always_asks(store_url: str) -> None:
    server = LiveServer(store_url, open_without_tokens=False).start()
    try:
        with server.client() as api:
            assert code(api.get("/artifacts")) == (401, "unauthorized")
    finally:
        server.stop()


def test_exposure_rule() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.8.0.1")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.1") and not is_loopback("example.com")
    check_exposure("127.0.0.1", 0, False)
    check_exposure("0.0.0.0", 1, False)
    check_exposure("0.0.0.0", 0, True)
    with pytest.raises(ConfigError, match="--insecure"):
        check_exposure("0.0.0.0", 0, False)


def test_token_cli(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "create", "--scope", "write", "--name", "laptop", "--url", sqlite_url]) == 0
    out = capsys.readouterr()
    token = out.out.strip()
    assert token.startswith("mt_") and "shown only now" in out.err
    assert main(["token", "ls", "--json", "--url", sqlite_url]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(t["name"], t["scope"]) for t in listed] == [("laptop", "write")]
    assert token not in json.dumps(listed)
    assert main(["token", "create", "--scope", "root", "--url", sqlite_url]) == 1
    assert "scope must be one of read, write, admin" in capsys.readouterr().err
    assert main(["token", "revoke", listed[0]["id"], "--url", sqlite_url]) == 0
    capsys.readouterr()
    assert main(["token", "ls", "--json", "--url", sqlite_url]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert main(["token", "revoke", "ffffffff", "--url", sqlite_url]) == 1
