"""Ids as people see them, on SQLite, PostgreSQL and MariaDB: short ids that resolve, ids
by prefix in every read, bookkeeping properties kept out of what users see, run timing as
attributes, and a missing store reported without being created."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from metatrail import Store
from metatrail.schemas import new_id
from metatrail.schemas.errors import AmbiguousIdError, StoreNotFoundError
from metatrail.schemas.reserved import RESERVED_PREFIX, is_reserved
from tests.fixtures.backends import SERVER_ADMIN_URLS, unavailable
from tests.fixtures.graphs import BurstGraph, at, burst_graph, gid, pipeline_graph


@pytest.fixture
def burst(engine: Engine) -> Iterator[tuple[Store, BurstGraph]]:
    pipeline_graph().apply(engine)
    graph = burst_graph(engine)
    yield Store(engine), graph


def _others_starting_with(prefix: str, node_id: str, every: list[str]) -> list[str]:
    return [i for i in every if i != node_id and i.startswith(prefix)]


def test_short_ids_are_the_shortest_prefixes_that_resolve(burst: tuple[Store, BurstGraph]) -> None:
    """Each short id names its node alone (``resolve`` takes it back), has at least 8
    characters, and one character less would be shared: git's rule, from the store."""
    store, graph = burst
    every = sorted(graph.all_ids() + [gid(n) for n in ("model-2", "raw-1", "pipe", "trainer-3")])
    every += [n.id for n in store.artifacts(include_retired=True, limit=1000).items if n.id not in every]
    short = store.short_ids(every)
    assert set(short) == set(every)
    lengths = set()
    for node_id, s in short.items():
        assert node_id.startswith(s) and len(s) >= 8 and not s.endswith("-"), (node_id, s)
        assert not _others_starting_with(s, node_id, every), s
        cut = s[:-1].rstrip("-")
        if len(cut) >= 8:
            assert _others_starting_with(cut, node_id, every), f"{s} is longer than needed"
        assert store.resolve(s)[1] == node_id
        lengths.add(len(s))
    # The burst's UUIDv7 ids share their first 8 characters: their short ids are longer.
    assert max(lengths) > 8 and min(lengths) == 8
    with pytest.raises(AmbiguousIdError):
        store.get(graph.executions[graph.runs[0]][0][:8])
    fresh = str(new_id())  # an id the store does not hold still gets a short form
    assert len(store.short_ids([fresh])[fresh]) >= 8
    assert store.short_ids([]) == {}


def test_every_read_takes_a_prefix(burst: tuple[Store, BurstGraph]) -> None:
    store, graph = burst
    run_a, run_b = graph.runs
    short = store.short_ids(graph.all_ids())
    execution, model = graph.executions[run_a][3], graph.models[run_a][3]
    assert store.get(short[execution]).id == execution
    assert [m.value for m in store.metrics(short[execution])] == [m.value for m in store.metrics(execution)]
    assert store.lineage(short[model], "upstream").start_id == model
    assert {n.id for n in store.lineage(short[model]).nodes} == {model, execution}
    compared = store.compare([short[run_a], short[run_b]])
    assert [c.id for c in compared.columns] == [run_a, run_b]
    by_prefix = store.metric_history("auc", context=short[run_b][:6])
    assert len(by_prefix) == len(graph.executions[run_b]) and {r.context_id for r in by_prefix} == {run_b}
    assert store.metric_history("auc", context="nightly-2") == by_prefix  # names still work
    assert store.latest("Model", context=short[run_a][:6]).id == graph.models[run_a][-1]  # type: ignore[union-attr]
    upstream = f"upstream_of('{short[model]}') AND type = 'Trainer'"  # lineage predicates too
    assert [x.id for x in store.executions(upstream).items] == [execution]
    assert store.count("execution", upstream) == 1
    assert store.executions("upstream_of('ffffffff')").items == ()  # no such node: nothing upstream
    with pytest.raises(AmbiguousIdError) as info:
        store.compare([execution[:8]])
    assert info.value.candidates and "and more" in str(info.value)
    with pytest.raises(AmbiguousIdError):
        store.executions(f"NOT downstream_of('{model[:8]}')")


def test_bookkeeping_properties_stay_out_of_user_data(burst: tuple[Store, BurstGraph]) -> None:
    """``@track``'s return shape and a run's start/end/status are recorded as properties
    under the reserved prefix; no read shows them as properties (JSON included), a run
    shows its timing and status as attributes, and compare heads columns with them."""
    store, graph = burst
    run_a, run_b = graph.runs
    execution = store.get(graph.executions[run_a][0])
    assert execution.custom_properties == {"note": "ok"}
    run = store.get(run_b)
    assert run.custom_properties == {"owner": "ana"} and run.properties == {"seed": 2}
    assert run.status == "FAILED" and run.started_at is not None and run.ended_at is not None  # type: ignore[union-attr]
    assert (run.ended_at - run.started_at).total_seconds() == 150  # type: ignore[union-attr,operator]
    texts = [
        json.dumps(store.executions(limit=100).to_json()),
        json.dumps(store.contexts(limit=100).to_json()),
        json.dumps(store.lineage(graph.models[run_a][0], "upstream").to_json()),
        json.dumps(store.compare([run_a, run_b]).to_json()),
        json.dumps(store.compare(graph.executions[run_a][:2]).to_json()),
    ]
    for t in texts:
        assert RESERVED_PREFIX not in t
    compared = store.compare([run_a, run_b])
    assert not any(is_reserved(k.split(".", 1)[-1]) or "started_at" in k for k in compared.params)
    a, b = compared.columns
    assert (a.state, b.state) == ("COMPLETE", "FAILED")
    assert (a.started_at, a.ended_at, a.duration_s) == (at(10), at(12.5), 150)
    assert compared.params["Trainer.lr"] == (0.01, 0.02)
    (pipe,) = store.compare([graph.pipeline]).columns  # no run() timing: its executions' span
    assert (pipe.started_at, pipe.ended_at, pipe.state) == (at(10), at(22.5), None)
    (one,) = store.compare([graph.executions[run_b][0]]).columns
    assert (one.name, one.state, one.started_at, one.ended_at) == ("train", "COMPLETE", at(20), at(22.5))


def test_store_open_creates_nothing_where_there_is_no_store(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "metadata.db"
    with pytest.raises(StoreNotFoundError) as info:
        Store.open(f"sqlite:///{missing}")
    assert str(missing) in str(info.value) and "METATRAIL_STORE_URL" in str(info.value)
    assert "\n" not in str(info.value)
    assert not missing.parent.exists()
    empty = tmp_path / "empty.db"
    empty.touch()  # a file, but no metatrail tables
    with pytest.raises(StoreNotFoundError):
        Store.open(f"sqlite:///{empty}")
    assert [p.name for p in tmp_path.iterdir()] == ["empty.db"]


@pytest.mark.parametrize("backend", ["postgresql", "mariadb"])
def test_store_open_on_a_server_without_a_store(backend: str) -> None:
    """A database that does not exist, and one without metatrail tables: one line naming
    the URL (never its password), and no table appears."""
    try:
        admin = create_engine(SERVER_ADMIN_URLS[backend], isolation_level="AUTOCOMMIT")
        with admin.connect():
            pass
    except Exception as exc:
        unavailable(f"{backend} unreachable: {exc}")
    name = f"mt_nostore_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = admin.url.set(database=name)
    try:
        # PostgreSQL trusts local users whatever password they give: the URL may carry one.
        shown = url.set(password="s3cret") if backend == "postgresql" else url
        with pytest.raises(StoreNotFoundError) as missing:
            Store.open(shown.render_as_string(hide_password=False))
        assert name in str(missing.value) and "s3cret" not in str(missing.value)
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        with pytest.raises(StoreNotFoundError, match="no metatrail store"):
            Store.open(url.render_as_string(hide_password=False))
        empty = create_engine(url)
        with empty.connect() as conn:
            schema = "public" if backend == "postgresql" else name
            tables = conn.execute(text(f"SELECT count(*) FROM information_schema.tables WHERE table_schema = '{schema}'"))
            assert tables.scalar() == 0
        empty.dispose()
    finally:
        with admin.connect() as conn:
            force = " WITH (FORCE)" if backend == "postgresql" else ""
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}{force}"))
        admin.dispose()
