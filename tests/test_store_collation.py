"""Strings compare exactly on every backend: names that differ only by case, accents or
trailing spaces are different names (keys apart, filters exact), and migration 0004 makes
a MariaDB store made before it so.

MariaDB's default collation (``utf8mb4_general_ci``) folds case and accents; even the
binary ``utf8mb4_bin`` pads with spaces (``'lr' = 'lr '`` holds). The store uses the
binary NO PAD collation; these tests hold it on the live schema.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, insert, text

from metatrail import Store
from metatrail.consumer.apply import apply_events
from metatrail.consumer.store.migrate import current_revision, head_revision, upgrade
from metatrail.consumer.store.engine import open_engine
from metatrail.schemas import (
    ArtifactRecorded,
    ContextUpserted,
    ExecutionStarted,
    StoreError,
    new_id,
    typed,
)
from tests.fixtures.backends import SERVER_ADMIN_URLS, backend_url, unavailable
from tests.fixtures.badinput import COLLIDING, TYPES
from tests.fixtures.dump import canonical_dump


def _colliding_graph() -> list[Any]:
    """One artifact per colliding name, each with a property of every colliding name
    whose value says whose it is, and executions typed by names that differ by case."""
    run = new_id()
    events: list[Any] = [ContextUpserted(context_id=run, type="Run", name="run")]
    for i, name in enumerate(COLLIDING):
        events.append(ArtifactRecorded(
            artifact_id=uuid.uuid5(uuid.NAMESPACE_OID, name), type=TYPES[i % len(TYPES)], uri=f"/a/{name}", name=name,
            context_ids=[run], properties=typed({name: i}), custom_properties=typed({n: f"{name}|{n}" for n in COLLIDING}),
        ))
        events.append(ContextUpserted(context_id=new_id(), type="Run", name=f"run {name}",
                                      properties=typed({"owner": name})))
    for t in TYPES:
        events.append(ExecutionStarted(execution_id=new_id(), type=t, name=t, parameters=typed({t: 1})))
    return events


def test_names_differing_by_case_accent_or_space_are_kept_apart_and_filtered_exactly(engine: Engine) -> None:
    apply_events(engine, _colliding_graph())
    store = Store(engine)
    assert store.count("artifact") == len(COLLIDING)
    for i, name in enumerate(COLLIDING):
        q = "'" + name + "'"
        found = store.artifacts(f"properties.`{name}` = {i}").items
        assert [a.name for a in found] == [name], name  # properties.P never finds p
        assert [a.name for a in store.artifacts(f"name = {q}").items] == [name]
        assert store.count("artifact", f"properties.`{name}` IS NOT NULL") == 1
        assert store.count("artifact", f"custom_properties.`{name}` = '{COLLIDING[0]}|{name}'") == 1
        assert store.count("artifact", f"name IN ({q})") == 1
        assert store.count("artifact", f"name != {q}") == len(COLLIDING) - 1
        assert [c.name for c in store.contexts(f"properties.owner = {q}").items] == [f"run {name}"]
        assert store.count("artifact", f"context.name = 'run {name}'") == 0
    for t in TYPES:
        assert [e.type for e in store.executions(f"type = '{t}'").items] == [t]
        assert [e.name for e in store.executions(f"parameters.`{t}` = 1").items] == [t]
    assert store.count("artifact", "properties.`LR ` = 3") == 0
    assert store.count("artifact", "name LIKE 'lr%'") == 2 and store.count("artifact", "name LIKE 'lr _'") == 0
    names = [a.name for a in store.artifacts(order_by="name", limit=100).items]
    assert names == sorted(COLLIDING)  # by code point, 'lr' before 'lr '


def _server_columns(engine: Engine) -> list[tuple[str, str, str | None]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'mt\\_%' AND COLLATION_NAME IS NOT NULL"))]


def _table_collations(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text(
            "SELECT TABLE_COLLATION FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE 'mt\\_%'")).scalars())


def test_every_text_column_is_binary_and_no_pad_on_mariadb(server_databases: dict, tmp_path: Any) -> None:
    """(A MariaDB matter: SQLite and PostgreSQL compare text by code point already.)"""
    engine = open_engine(backend_url("mariadb", server_databases, tmp_path))
    try:
        _check_binary_no_pad(engine)
    finally:
        engine.dispose()


def _check_binary_no_pad(engine: Engine) -> None:
    columns = _server_columns(engine)
    assert len(columns) > 40  # every name, key, property and text column
    assert {c for _, _, c in columns} == {"utf8mb4_nopad_bin"}, [c for c in columns if c[2] != "utf8mb4_nopad_bin"]
    assert _table_collations(engine) == {"utf8mb4_nopad_bin"}  # so columns added later inherit it
    with engine.connect() as conn:  # why NO PAD: the binary collation alone pads with spaces
        padded, exact = conn.execute(text(
            "SELECT _utf8mb4'lr' = _utf8mb4'lr ' COLLATE utf8mb4_bin, "
            "_utf8mb4'lr' = _utf8mb4'lr ' COLLATE utf8mb4_nopad_bin")).one()
    assert (padded, exact) == (1, 0)


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """An empty database, not migrated, of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/old.db"
        return
    admin_url = SERVER_ADMIN_URLS[request.param]
    name = f"mt_mig_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:
        unavailable(f"{request.param} unreachable: {exc}")
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            suffix = " WITH (FORCE)" if request.param == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{suffix}"))
        admin.dispose()


def test_migration_0004_upgrades_a_store_made_before_it(fresh_url: str) -> None:
    """A store at revision 0003 with data (on MariaDB: in the server's case-insensitive
    collation, where colliding names cannot be stored) upgrades in place: text becomes
    exact, data stays, executions get their last event time, and colliding names apply."""
    engine = open_engine(fresh_url)
    try:
        upgrade(engine, "0003")
        started = ExecutionStarted(execution_id=new_id(), type="Trainer", name="old",
                                   occurred_at=datetime(2026, 1, 1, tzinfo=timezone.utc))
        old = [ContextUpserted(context_id=new_id(), type="Run", name="old", properties=typed({"lr": 1})), started]
        _insert_at_0003(engine, old)
        if engine.dialect.name in ("mysql", "mariadb"):
            assert "utf8mb4_nopad_bin" not in _table_collations(engine)
            with pytest.raises(StoreError):  # 'lr' and 'LR' are one key under the old collation
                _insert_at_0003(engine, [ContextUpserted(context_id=new_id(), type="Run", name="x",
                                                         properties=typed({"lr": 1, "LR": 2}))])
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        if engine.dialect.name in ("mysql", "mariadb"):
            assert {c for _, _, c in _server_columns(engine)} == {"utf8mb4_nopad_bin"}
        store = Store(engine)
        assert [c.properties for c in store.contexts("name = 'old'").items] == [{"lr": 1}]
        [execution] = store.executions("name = 'old'").items
        assert execution.last_event_at == started.occurred_at  # backfilled from updated_at
        apply_events(engine, _colliding_graph())
        assert store.count("artifact") == len(COLLIDING)
        assert canonical_dump(engine)["mt_artifacts"]
    finally:
        engine.dispose()


def _insert_at_0003(engine: Engine, events: list[Any]) -> None:
    """Write what a consumer of revision 0003 wrote for these events (the columns of that
    revision only: today's apply also writes the columns 0004 adds)."""
    from metatrail.consumer.store.engine import session_scope
    from metatrail.consumer.store.models import ContextPropertyRow, ContextRow, ExecutionRow
    from metatrail.consumer.store.property_document import encode

    with session_scope(engine) as s:
        for e in events:
            if isinstance(e, ContextUpserted):
                s.execute(insert(ContextRow.__table__).values(
                    id=str(e.context_id), type=e.type, name=e.name, is_placeholder=False, created_at=e.occurred_at,
                    updated_at=e.occurred_at, field_stamps={},
                    properties_doc=encode({k: v.value for k, v in e.properties.items()}, {})))
                for name, value in e.properties.items():
                    s.execute(insert(ContextPropertyRow.__table__).values(
                        node_id=str(e.context_id), is_custom=False, name=name, value_type="int", int_value=value.value,
                        double_value=float(value.value), stamp_at=e.occurred_at, stamp_event=str(e.event_id)))
            else:
                s.execute(insert(ExecutionRow.__table__).values(
                    id=str(e.execution_id), type=e.type, name=e.name, state="RUNNING", state_rank=1,
                    is_placeholder=False, created_at=e.occurred_at, updated_at=e.occurred_at,
                    started_at=e.occurred_at, field_stamps={}))
