"""``metatrail import mlmd``: real TFX stores and stores written by ml-metadata, on every
backend; identity and re-import; old schemas and server sources; bad sources; an
interrupted import."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from metatrail import Store
from metatrail.consumer.cli import main
from metatrail.consumer.mlmd import import_mlmd
from metatrail.consumer.mlmd.importer import overlaps
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.migrate import upgrade
from metatrail.consumer.store.models import Base, DeadLetterRow, EdgeRow, TypeRow
from tests.fixtures.backends import SERVER_ADMIN_URLS, unavailable
from tests.fixtures.dump import canonical_dump
from tests.fixtures.mlmd_stores import (
    COUNTED,
    SHARED_STORES,
    build_pipeline_store,
    mlmd,
    open_store,
    server_config,
    shared_store,
    source_counts,
    sqlite_config,
)

EDGE_CODES = {"DECLARED_OUTPUT": 1, "DECLARED_INPUT": 2, "INPUT": 3, "OUTPUT": 4, "INTERNAL_INPUT": 5,
              "INTERNAL_OUTPUT": 6, "PENDING_OUTPUT": 7}


def _counts(engine: Engine) -> dict[str, int]:
    tables = Base.metadata.tables
    with engine.connect() as conn:
        return {name: conn.execute(select(func.count()).select_from(tables[name])).scalar_one()
                for name in COUNTED.values()}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("mlmd") / "pipeline.sqlite"
    build_pipeline_store(sqlite_config(path))
    return path


@pytest.mark.parametrize("name", SHARED_STORES)
def test_real_tfx_stores_import_with_the_source_counts(name: str, engine: Engine) -> None:
    path = shared_store(name)
    report = import_mlmd(str(path), engine)
    expected = source_counts(path)
    assert _counts(engine) == {COUNTED[t]: n for t, n in expected.items()}
    assert report.dead_lettered == 0 and report.applied == report.events > 0
    assert report.source_rows["Event"] == expected["Event"]
    before = canonical_dump(engine)
    again = import_mlmd(str(path), engine)
    assert (again.applied, again.duplicates) == (0, report.events)
    assert canonical_dump(engine) == before


def _graph(store: Store, start: str, direction: str) -> tuple[list[int], list[int], list[tuple[int, int, int]]]:
    graph = store.lineage(start, direction, max_hops=200)  # type: ignore[arg-type]
    by_id = {n.id: n for n in graph.nodes}
    edges = []
    for e in graph.edges:
        artifact, execution = (e.source, e.target) if e.kind == "input" else (e.target, e.source)
        edges.append((by_id[artifact].mlmd_id, by_id[execution].mlmd_id, EDGE_CODES[e.edge_type or e.kind.upper()]))
    return (sorted(n.mlmd_id for n in graph.nodes if n.kind == "artifact"),
            sorted(n.mlmd_id for n in graph.nodes if n.kind == "execution"), sorted(edges))


def _mlmd_graph(mlmd_store: Any, artifact_id: int, direction: int) -> tuple[list[int], list[int], list[tuple[int, int, int]]]:
    _, pb = mlmd()
    options = pb.LineageSubgraphQueryOptions(max_num_hops=100, direction=direction)
    options.starting_artifacts.filter_query = f"id = {artifact_id}"
    g = mlmd_store.get_lineage_subgraph(options)
    return (sorted(a.id for a in g.artifacts), sorted(x.id for x in g.executions),
            sorted((e.artifact_id, e.execution_id, e.type) for e in g.events))


def _same_lineage(source: Path, store_url: str, engine: Engine, artifacts: str, oracle_copy: Path) -> int:
    """Import ``source``; compare the lineage of each artifact matching ``artifacts`` with
    ml-metadata's on ``oracle_copy`` (a copy: the library may migrate an old schema)."""
    mlmd_store = open_store(oracle_copy, upgrade=True)
    import_mlmd(str(source), engine)
    compared = 0
    with Store.open(store_url) as store:
        for node in store.artifacts(artifacts, include_retired=True, limit=1000).items:
            for direction, code in (("upstream", 1), ("downstream", 2)):
                assert _graph(store, node.id, direction) == _mlmd_graph(mlmd_store, node.mlmd_id, code), (
                    node.type, node.mlmd_id, direction)
                compared += 1
    return compared


def test_lineage_of_every_model_equals_get_lineage_subgraph(built: Path, store_url: str, engine: Engine,
                                                            tmp_path: Path) -> None:
    copy = tmp_path / "oracle.sqlite"
    shutil.copy(built, copy)
    assert _same_lineage(built, store_url, engine, "type IN ('Model', 'PushedModel')", copy) == 16


@pytest.mark.parametrize("name,artifacts,compared", [
    ("tfx-1.9-interactive-v8.sqlite", "type IN ('Model', 'PushedModel')", 4),  # base type mlmd.Model
    ("tfx-portable-v10.sqlite", "type = 'Examples'", 2),  # it holds no model
])
def test_lineage_on_real_stores_equals_get_lineage_subgraph(name: str, artifacts: str, compared: int, sqlite_url: str,
                                                           tmp_path: Path) -> None:
    path = shared_store(name)
    copy = tmp_path / "oracle.sqlite"
    shutil.copy(path, copy)
    engine = open_engine(sqlite_url)
    try:
        assert _same_lineage(path, sqlite_url, engine, artifacts, copy) == compared
    finally:
        engine.dispose()


def test_values_states_types_and_edges_keep_their_meaning(built: Path, sqlite_url: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "mlmd", str(built), "--url", sqlite_url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["schema_version"] == 10 and report["pipelines"] == ["ctr"] and report["runs"] == 4
    with Store.open(sqlite_url) as store:
        examples = store.artifacts("name = 'examples-1'").items[0]
        model = store.artifacts("name = 'model-0'", include_retired=True).items[0]
        trainer = store.executions("name = 'train-2'").items[0]
        pipeline = store.contexts("type = 'pipeline'").items[0]
        run = store.contexts("name = 'run-2'").items[0]
        states = {a.state for a in store.artifacts(None, include_retired=True, limit=100).items}
        exec_states = {x.state for x in store.executions(None, limit=100).items}
    assert examples.custom_properties["stats"] == {"rows": 2000, "columns": ["a", "b"], "ok": True}
    assert examples.properties == {"span": 1, "split_names": '["train", "eval"]'} and examples.external_id == "examples/1"
    assert model.custom_properties["blessing"]["type_url"] == "type.googleapis.com/ml_metadata.Value"
    assert model.custom_properties["tuned"] is True and model.properties["accuracy"] == pytest.approx(0.7)
    assert states == {"LIVE", "PENDING", "ABANDONED", "REFERENCE", "DELETED", "MARKED_FOR_DELETION"}
    assert exec_states == {"COMPLETE", "FAILED", "CACHED", "CANCELED", "RUNNING", "NEW"}
    assert trainer.type == "tfx.components.trainer.component.Trainer" and trainer.properties["train_steps"] == 300
    assert run.parent_ids == (pipeline.id,) and pipeline.custom_properties == {"owner": "ads-team"}
    assert main(["show", trainer.id[:12], "--url", sqlite_url, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["mlmd_id"] == trainer.mlmd_id and shown["external_id"] == "train/2"
    engine = open_engine(sqlite_url)
    try:
        with engine.connect() as conn:
            bases = dict(conn.execute(select(TypeRow.name, TypeRow.base_type).where(TypeRow.kind == "artifact")).all())
            roles = {(r.role, r.edge_type) for r in conn.execute(select(EdgeRow.role, EdgeRow.edge_type))}
    finally:
        engine.dispose()
    assert bases["Model"] == "mlmd.Model" and bases["Examples"] == "mlmd.Dataset"
    assert {("examples:0", "INPUT"), ("model:0", "OUTPUT"), ("model:0", "DECLARED_OUTPUT"),
            ("base_model:0", "INTERNAL_INPUT")} <= roles
    # compare treats a TFX run as a run, naming its steps by component
    with Store.open(sqlite_url) as store:
        table = store.compare([run.id])
    assert table.params["Trainer.train_steps"] == (300,) and table.params["index"] == (2,)


def _nodes_by_mlmd_id(url: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    with Store.open(url) as store:
        out = {}
        for kind in ("artifact", "execution", "context"):
            for n in store.find(kind, None, include_retired=True, limit=1000).items:  # type: ignore[arg-type]
                out[(kind, n.mlmd_id)] = (n.type, n.name, getattr(n, "uri", None), getattr(n, "state", None),
                                          json.dumps(n.properties, sort_keys=True),
                                          json.dumps(n.custom_properties, sort_keys=True))
        return out


@pytest.fixture
def server_mlmd_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """An empty database on a server for ml-metadata to write a store into."""
    backend = request.param
    admin = create_engine(SERVER_ADMIN_URLS[backend], isolation_level="AUTOCOMMIT")
    name = f"mt_mlmd_src_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # unreachable server
        admin.dispose()
        unavailable(f"{backend} unreachable: {exc}")
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}" + (" WITH (FORCE)" if backend == "postgresql" else "")))
    admin.dispose()


@pytest.mark.parametrize("server_mlmd_url", ["mariadb", "postgresql"], indirect=True)
def test_mysql_and_postgresql_mlmd_stores_import_like_sqlite_ones(server_mlmd_url: str, built: Path,
                                                                  tmp_path: Path) -> None:
    build_pipeline_store(server_config(server_mlmd_url))
    from_sqlite, from_server = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    for source, url in ((str(built), from_sqlite), (server_mlmd_url, from_server)):
        engine = open_engine(url)
        upgrade(engine)
        report = import_mlmd(source, engine)
        assert report.dead_lettered == 0
        engine.dispose()
    assert _nodes_by_mlmd_id(from_server) == _nodes_by_mlmd_id(from_sqlite)


@pytest.mark.parametrize("version", [6, 8, 9])
def test_older_schema_versions_import(version: int, built: Path, tmp_path: Path) -> None:
    store_module, _ = mlmd()
    old = tmp_path / "old.sqlite"
    shutil.copy(built, old)
    store_module.downgrade_schema(sqlite_config(old), downgrade_to_schema_version=version)
    urls = {}
    for name, source in (("new", built), ("old", old)):
        urls[name] = f"sqlite:///{tmp_path}/{name}.db"
        engine = open_engine(urls[name])
        upgrade(engine)
        assert import_mlmd(str(source), engine).schema_version == (10 if name == "new" else version)
        engine.dispose()
    new, old_nodes = _nodes_by_mlmd_id(urls["new"]), _nodes_by_mlmd_id(urls["old"])
    assert new.keys() == old_nodes.keys()
    # what the older schema holds is the same (it lacks bool and proto values, so compare the rest)
    assert {k: v[:4] for k, v in new.items()} == {k: v[:4] for k, v in old_nodes.items()}


def test_a_grown_store_imports_what_is_new_or_changed(tmp_path: Path, engine: Engine) -> None:
    _, pb = mlmd()
    path = tmp_path / "growing.sqlite"
    built = build_pipeline_store(sqlite_config(path), runs=2)
    first = import_mlmd(str(path), engine)
    [model] = built.store.get_artifacts_by_id([built.ids["model-1"]])
    assert model.state == pb.Artifact.DELETED
    model.state = pb.Artifact.LIVE  # revived, and re-evaluated
    model.properties["accuracy"].double_value = 0.99
    built.store.put_artifacts([model])
    more = pb.Execution(type_id=built.store.get_execution_type("tfx.components.pusher.component.Pusher").id,
                        name="push-again", last_known_state=pb.Execution.RUNNING)
    [new_id] = built.store.put_executions([more])
    again = import_mlmd(str(path), engine)
    assert again.applied == 2 and again.duplicates == first.events - 1
    assert _counts(engine) == {COUNTED[t]: n for t, n in source_counts(path).items()}
    url = engine.url.render_as_string(hide_password=False)
    with Store.open(url) as store:
        revived = store.artifacts("id = %d" % built.ids["model-1"]).items[0]
        assert (revived.state, revived.properties["accuracy"]) == ("LIVE", 0.99)
        assert store.executions(f"id = {new_id}").items[0].state == "RUNNING"


def test_a_dry_run_into_no_store_creates_none(built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "none" / "metadata.db"
    assert main(["import", "mlmd", str(built), "--url", f"sqlite:///{target}", "--dry-run", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["would_apply"] == report["events"] > 0 and not target.parent.exists()


def test_dry_run_counts_and_writes_nothing(built: Path, engine: Engine) -> None:
    dry = import_mlmd(str(built), engine, dry_run=True)
    assert dry.would_apply == dry.events > 0 and dry.applied == 0
    assert _counts(engine) == dict.fromkeys(COUNTED.values(), 0)
    import_mlmd(str(built), engine)
    again = import_mlmd(str(built), engine, dry_run=True)
    assert (again.would_apply, again.duplicates) == (0, dry.events)


def test_pages_are_read_ahead_and_applied_in_threads_only_into_a_database_server(tmp_path: Path) -> None:
    sqlite = open_engine(f"sqlite:///{tmp_path}/metatrail.db")
    server = create_engine("postgresql+psycopg://nobody@127.0.0.1:9/none")  # an engine connects only when used
    try:
        assert overlaps(server, dry_run=False)
        assert not overlaps(server, dry_run=True)  # nothing is applied: nothing to overlap
        assert not overlaps(sqlite, dry_run=False)  # SQLite waits on the GIL the reading thread holds
        assert not overlaps(None, dry_run=True)
    finally:
        sqlite.dispose()
        server.dispose()


class _Stop(Exception):
    pass


def test_an_interrupted_import_leaves_whole_pages_and_a_rerun_completes(built: Path, store_url: str, engine: Engine,
                                                                        tmp_path: Path) -> None:
    pages: list[str] = []

    def stop_in_executions(phase: str, done: int, total: int) -> None:
        pages.append(phase)
        if pages.count("executions") == 1:  # into a server the next page is in flight: it ends, whole
            raise _Stop

    with pytest.raises(_Stop):
        import_mlmd(str(built), engine, page_size=5, progress=stop_in_executions)
    source = sqlite3.connect(f"file:{built}?mode=ro", uri=True)
    events = dict(source.execute("SELECT execution_id, COUNT(*) FROM Event GROUP BY execution_id").fetchall())
    props = dict(source.execute("SELECT artifact_id, COUNT(*) FROM ArtifactProperty GROUP BY artifact_id").fetchall())
    with Store.open(store_url) as store:
        executions = store.executions(None, limit=1000).items
        artifacts = store.artifacts(None, include_retired=True, limit=1000).items
        assert 0 < len(executions) < 12 and len(artifacts) == 12
        for x in executions:  # every imported execution has all its edges
            assert len(store.lineage(x.id, "both", max_hops=1).edges) >= events[x.mlmd_id] - 1
            assert _edges_of(engine, x.id) == events[x.mlmd_id]
        for a in artifacts:  # ... and every artifact all its properties
            assert len(a.properties) + len(a.custom_properties) == props.get(a.mlmd_id, 0)
    import_mlmd(str(built), engine, page_size=5)
    clean_url = f"sqlite:///{tmp_path}/clean.db"
    clean = open_engine(clean_url)
    upgrade(clean)
    import_mlmd(str(built), clean)
    assert _comparable(canonical_dump(engine)) == _comparable(canonical_dump(clean))
    clean.dispose()


def test_a_failed_import_ends_its_reading_thread_before_the_source_closes(built: Path, engine: Engine) -> None:
    """Into a database server the next pages are read in a thread. When a page fails, that
    thread has ended by the time the import raises (and closes the source), although the
    exception, and the frames its traceback holds, are still alive: a thread left
    reading a closed SQLite connection crashes the process."""
    ticks: list[str] = []

    def stop_early(phase: str, done: int, total: int) -> None:
        ticks.append(phase)
        if len(ticks) == 2:
            raise _Stop

    with pytest.raises(_Stop) as caught:
        import_mlmd(str(built), engine, page_size=5, progress=stop_early)
    assert caught.tb is not None  # the traceback, and the frames it holds, still alive here
    assert not [t for t in threading.enumerate() if t.name == "metatrail-mlmd-reader"]


def _edges_of(engine: Engine, execution_id: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(EdgeRow.__table__)
                                .where(EdgeRow.__table__.c.execution_id == execution_id)).scalar_one())


def _comparable(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    """A dump without the rows that say which process applied what (producer pids differ)."""
    return {t: rows for t, rows in dump.items() if t != "mt_applied_events"}


def _bad_sources(tmp_path: Path, built: Path) -> dict[str, tuple[str, str]]:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not a database\n" * 100)
    empty = tmp_path / "empty.sqlite"
    sqlite3.connect(empty).execute("CREATE TABLE t (x)").connection.close()
    newer = tmp_path / "newer.sqlite"
    shutil.copy(built, newer)
    db = sqlite3.connect(newer)
    db.execute("UPDATE MLMDEnv SET schema_version = 11")
    db.commit()
    db.close()
    older = tmp_path / "older.sqlite"
    shutil.copy(newer, older)
    db = sqlite3.connect(older)
    db.execute("UPDATE MLMDEnv SET schema_version = 5")
    db.commit()
    db.close()
    truncated = tmp_path / "truncated.sqlite"
    data = built.read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    return {
        "missing": (str(tmp_path / "nope.sqlite"), "no such file"),
        "not a database": (str(text_file), "is not an SQLite database"),
        "not MLMD": (str(empty), "is not an MLMD store"),
        "newer schema": (str(newer), "schema version 11 is not supported"),
        "older schema": (f"sqlite:///{older}", "schema version 5 is not supported"),
        "truncated": (str(truncated), "damaged or truncated"),
        "other database": ("mongodb://localhost/x", "not mongodb"),
        "unreachable server": ("mysql+pymysql://root@127.0.0.1:9/mlmd", "cannot read it as an MLMD store"),
    }


def test_bad_sources_get_one_line_errors_and_import_nothing(built: Path, sqlite_url: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    for what, (location, message) in _bad_sources(tmp_path, built).items():
        assert main(["import", "mlmd", location, "--url", sqlite_url]) == 1, what
        err = capsys.readouterr().err.strip()
        assert err.startswith("metatrail: error: ") and message in err and "\n" not in err, (what, err)
    engine = open_engine(sqlite_url)
    try:
        assert _counts(engine) == dict.fromkeys(COUNTED.values(), 0)
    finally:
        engine.dispose()


def test_a_node_the_contract_cannot_hold_is_dead_lettered_and_the_rest_imported(tmp_path: Path, engine: Engine) -> None:
    _, pb = mlmd()
    path = tmp_path / "odd.sqlite"
    built = build_pipeline_store(sqlite_config(path), runs=1)
    odd = pb.Artifact(type_id=built.store.get_artifact_type("Examples").id, uri="gs://" + "x" * 3000)
    [odd_id] = built.store.put_artifacts([odd])
    report = import_mlmd(str(path), engine)
    assert report.dead_lettered == 1 and f"artifact {odd_id}" in report.dead_letters[0].reason
    assert "uri" in report.dead_letters[0].reason
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeadLetterRow.__table__)).scalar_one() == 1
    assert _counts(engine)["mt_artifacts"] == source_counts(path)["Artifact"] - 1
    assert import_mlmd(str(path), engine).dead_lettered == 1  # still refused, stored once
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DeadLetterRow.__table__)).scalar_one() == 1


def test_every_converted_event_is_a_valid_contract_event(built: Path) -> None:
    """The converter builds events without pydantic's validation: each must survive it."""
    from metatrail.consumer.mlmd.convert import Converter
    from metatrail.consumer.mlmd.reader import Reader
    from metatrail.consumer.mlmd.source import open_source
    from metatrail.schemas import dump_event, parse_event

    sources = [built] + [p for p in (shared_store_or_none(n) for n in SHARED_STORES) if p is not None]
    checked = 0
    for path in sources:
        source = open_source(str(path))
        try:
            with source.engine.connect() as conn:
                reader = Reader(source, conn)
                converter = Converter(source.identity, reader.types())
                batches = [converter.type_events()]
                for kind in ("context", "artifact", "execution"):
                    batches += [converter.node_events(page) for page in reader.node_pages(kind, 7)]
                for table in ("Attribution", "Association"):
                    batches += [converter.membership_events(table, pairs) for pairs in reader.memberships(table, 7)]
        finally:
            source.close()
        for batch in batches:
            assert not batch.dead
            for event in batch.events:
                wire = dump_event(event)
                assert dump_event(parse_event(wire)) == wire
                checked += 1
    assert checked > 100


def shared_store_or_none(name: str) -> Path | None:
    from tests.fixtures.mlmd_stores import SHARED_MLMD

    path = SHARED_MLMD / name
    return path if path.is_file() else None


def test_a_store_imported_with_the_earlier_id_layout_reimports_as_duplicates(
        built: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stores imported before ids came in runs of 16 have UUIDv5 node ids (derived_id of
    the store's identity, kind and MLMD id). Importing such a store again keeps them: no
    node doubles, every event is a duplicate; a store imported afresh gets the new ids."""
    from metatrail.consumer.mlmd import importer
    from metatrail.consumer.mlmd.ids import LegacyIds
    from metatrail.schemas.ids import derived_id

    with monkeypatch.context() as patch:  # what an earlier build did
        patch.setattr(importer, "SourceIds", LegacyIds)
        first = import_mlmd(str(built), engine)
    counts, before = _counts(engine), canonical_dump(engine)
    again = import_mlmd(str(built), engine)
    assert (again.applied, again.duplicates) == (0, first.events)
    assert _counts(engine) == counts and canonical_dump(engine) == before
    with engine.connect() as conn:
        (mlmd_id, node_id), *_ = conn.execute(text("SELECT mlmd_id, id FROM mt_artifacts ORDER BY mlmd_id")).all()
    assert node_id == str(derived_id("mlmd", first.identity, "artifact", mlmd_id))
