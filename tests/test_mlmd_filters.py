"""MLMD's filter_query syntax answers as MLMD does: the same nodes (by MLMD id) as
ml-metadata's get_artifacts/get_executions/get_contexts on the source store, with
metatrail's store on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from metatrail import Store
from metatrail.consumer.cli import main
from metatrail.consumer.mlmd import import_mlmd
from metatrail.consumer.query.compile import ENTITIES, Compiler
from metatrail.consumer.query.filters import Bare, parse_filter
from metatrail.consumer.triggers.candidates import filter_clause
from metatrail.schemas.errors import FilterError
from tests.fixtures.mlmd_stores import build_pipeline_store, mlmd, sqlite_config

#: (kind, MLMD filter_query): every feature of the syntax that ml-metadata 1.17.1 accepts.
QUERIES = [
    ("artifact", "type = 'Model'"),
    ("artifact", "uri LIKE 'gs://ctr/%'"),
    ("artifact", "name = 'model-1'"),
    ("artifact", "name IS NULL"),
    ("artifact", "id IN (1, 2, 5)"),
    ("artifact", "external_id = 'examples/2'"),
    ("artifact", "external_id IS NULL"),
    ("artifact", "create_time_since_epoch > 0 AND last_update_time_since_epoch >= 1"),
    ("artifact", "state = LIVE"),
    ("artifact", "state != LIVE"),
    ("artifact", "state = PENDING OR state = DELETED"),
    ("artifact", "state IN (PENDING, LIVE)"),
    ("artifact", "state NOT IN (2)"),
    ("artifact", "properties.span.int_value >= 1"),
    ("artifact", "properties.span.int_value != 1"),
    ("artifact", "NOT(properties.span.int_value = 1)"),
    ("artifact", "properties.span.int_value = 1 OR type = 'Model'"),
    ("artifact", "properties.accuracy.double_value > 0.75"),
    ("artifact", "properties.framework.string_value = 'keras'"),
    ("artifact", "properties.split_names.string_value IS NOT NULL"),
    ("artifact", "custom_properties.`plugins.mlflow.run_id`.string_value = 'mlflow-2'"),
    ("artifact", "custom_properties.tuned.bool_value = TRUE"),
    ("artifact", "contexts_a.name = 'run-1'"),
    ("artifact", "contexts_a.id = 5"),
    ("artifact", "contexts_a.type = 'pipeline_run' AND contexts_a.name != 'run-1'"),
    ("artifact", "contexts_a.name = 'run-1' AND contexts_b.type = 'node'"),
    ("artifact", "events_e.type = INPUT"),
    ("artifact", "events_e.type = OUTPUT AND events_e.execution_id = 2"),
    ("artifact", "events_e.milliseconds_since_epoch > 0"),
    ("execution", "last_known_state = FAILED"),
    ("execution", "last_known_state != COMPLETE"),
    ("execution", "type = 'tfx.components.trainer.component.Trainer' AND properties.train_steps.int_value > 150"),
    ("execution", "name LIKE 'train-%' AND NOT (last_known_state = CACHED)"),
    ("execution", "custom_properties.seed.int_value < 2"),
    ("execution", "contexts_c.name = 'run-2'"),
    ("execution", "events_e.type = DECLARED_OUTPUT"),
    ("execution", "events_e.type = INTERNAL_INPUT"),
    ("execution", "events_e.artifact_id = 5"),
    ("context", "type = 'pipeline_run'"),
    ("context", "external_id = 'pipelines/ctr'"),
    ("context", "properties.index.int_value IN (1, 3)"),
    ("context", "custom_properties.owner.string_value = 'ads-team'"),
    ("context", "parent_contexts_p.name = 'ctr'"),
    ("context", "parent_contexts_p.id = 1"),
    ("context", "child_contexts_c.name = 'run-3'"),
    ("context", "artifacts_a.type = 'Model'"),
    ("context", "artifacts_a.state = LIVE"),
    ("context", "executions_e.last_known_state = FAILED"),
]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[tuple[str, str], list[int]]]:
    """The MLMD store (written by ml-metadata) and what ml-metadata answers to each query."""
    store_module, _ = mlmd()
    path = tmp_path_factory.mktemp("mlmd") / "metadata.sqlite"
    built = build_pipeline_store(sqlite_config(path))
    getters = {"artifact": built.store.get_artifacts, "execution": built.store.get_executions,
               "context": built.store.get_contexts}
    answers = {}
    for kind, query in QUERIES:
        found = getters[kind](list_options=store_module.ListOptions(filter_query=query))
        answers[(kind, query)] = sorted(n.id for n in found)
    return path, answers


def _ours(store: Store, kind: str, query: str) -> list[int]:
    page = store.find(kind, query, include_retired=True, limit=10_000)  # type: ignore[arg-type]
    return sorted(n.mlmd_id for n in page.items)


def test_mlmd_queries_match_ml_metadata(source: tuple[Path, dict[tuple[str, str], list[int]]], store_url: str,
                                        engine: Engine) -> None:
    path, answers = source
    import_mlmd(str(path), engine)
    with Store.open(store_url) as store:
        differ = {q: (want, _ours(store, *q)) for q, want in answers.items() if _ours(store, *q) != want}
    assert not differ, f"MLMD and metatrail disagree (query: (MLMD, metatrail)): {differ}"
    assert len(answers) >= 40 and sum(1 for want in answers.values() if want) >= 35  # the queries select something


def test_what_ml_metadata_refuses_is_answered(source: tuple[Path, Any], sqlite_url: str) -> None:
    """ml-metadata 1.17.1 refuses these (documented in mlmd_syntax); metatrail answers them."""
    path, _ = source
    with Store.open(sqlite_url) as store:
        import_mlmd(str(path), store.engine)
        abandoned = store.artifacts("state = ABANDONED", include_retired=True).items
        assert [a.state for a in abandoned] == ["ABANDONED"]
        assert {a.state for a in store.artifacts("state = REFERENCE", include_retired=True).items} == {"REFERENCE"}
        assert _ours(store, "artifact", "state IN (1, 2)") == _ours(store, "artifact", "state IN (PENDING, LIVE)")
        assert _ours(store, "artifact", "events_e.type = PENDING_OUTPUT") == []
        # both syntaxes in one filter: the MLMD part gives the whole filter MLMD's meaning
        mixed = _ours(store, "artifact", "properties.framework = 'keras' AND contexts_a.name = 'run-1'")
        assert mixed == _ours(store, "artifact", "properties.framework.string_value = 'keras' AND context.name = 'run-1'")
        assert len(mixed) == 1


def test_both_syntaxes_through_the_cli_and_step_filters(source: tuple[Path, Any], sqlite_url: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    path, answers = source
    assert main(["import", "mlmd", str(path), "--url", sqlite_url, "--json"]) == 0
    capsys.readouterr()
    query = "type = 'Model' AND contexts_a.name = 'run-1'"
    assert main(["ls", "artifacts", "--filter", query, "--url", sqlite_url, "--json", "--all"]) == 0
    import json

    items = json.loads(capsys.readouterr().out)["items"]
    assert [i["mlmd_id"] for i in items] == [5] and items[0]["name"] == "model-1"
    # step input filters compile through the same language
    clause = filter_clause("properties.span.int_value >= 1 AND state = LIVE", "sqlite")
    assert "mt_artifact_properties" in str(clause.compile())


@pytest.mark.parametrize(
    "kind,query,message",
    [
        ("context", "contexts_a.name = 'x'", "does not apply to contexts"),
        ("artifact", "artifacts_a.name = 'x'", "does not apply to artifacts"),
        ("artifact", "events_e.colour = 'x'", "no field 'colour'"),
        ("artifact", "properties.span.float_value = 1", "int_value|double_value|string_value|bool_value"),
        ("artifact", "type_id = 3", "type_id"),
        ("artifact", "name = LIVE", "bare name"),
        ("artifact", "state = SHINY", "not one of"),
        ("artifact", "state > LIVE", "=, !=, IN or NOT IN"),
        ("artifact", "create_time_since_epoch > '2024-01-01'", "milliseconds since the epoch"),
        ("artifact", "last_update_time_since_epoch > create_time_since_epoch", "comparing two fields"),
        ("execution", "properties.lr.bool_value = 3", "TRUE or FALSE"),
        ("artifact", "contexts_b.name = 'y' AND context.contexts_a.name = 'x'", "inside context"),
        ("artifact", "context.contexts_a.name = 'x'", "unknown field 'contexts_a.name'"),
    ],
)
def test_mlmd_syntax_errors_say_what_is_wrong(kind: str, query: str, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        Compiler("sqlite").compile(parse_filter(query), ENTITIES[kind])


def test_bare_names_parse_as_enum_values() -> None:
    tree = parse_filter("state IN (PENDING, LIVE)")
    assert tree.value == ("PENDING", "LIVE") and all(isinstance(v, Bare) for v in tree.value)  # type: ignore[union-attr]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mariadb"])
def test_each_alias_is_one_join_and_property_joins_name_their_key(dialect: str) -> None:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    compiled = Compiler(dialect).compile(
        parse_filter("contexts_a.name = 'r' AND contexts_a.type = 'run' AND properties.span.int_value = 1 "
                     "AND contexts_b.name = 's'"), ENTITIES["artifact"])
    sql = str(compiled.compile(dialect={"sqlite": sqlite.dialect(), "postgresql": postgresql.dialect(),
                                        "mariadb": mysql.dialect()}[dialect]))
    assert sql.count("JOIN mt_attributions") == 2 and sql.count("JOIN mt_artifact_properties") == 1


@pytest.mark.parametrize("query", [
    "properties.span.int_value = 7",
    "properties.span.int_value >= 7 AND properties.span.int_value < 9 AND type = 'Model'",
    "custom_properties.`plugins.mlflow.run_id`.string_value = 'mlflow-2'",
    "contexts_a.name = 'run-1'",
    "events_e.type = OUTPUT AND events_e.execution_id = 2",
    "id = 5",
])
def test_mlmd_filters_find_rows_through_indexes(query: str, source: tuple[Path, Any], sqlite_url: str) -> None:
    """SQLite's plan searches an index for every table the filter touches (no full scan)."""
    from sqlalchemy import select
    from sqlalchemy.dialects import sqlite

    path, _ = source
    with Store.open(sqlite_url) as store:
        import_mlmd(str(path), store.engine)
        entity = ENTITIES["artifact"]
        cond = Compiler("sqlite").compile(parse_filter(query), entity)
        sql = str(select(entity.table.c.id).where(cond).compile(dialect=sqlite.dialect(),
                                                                 compile_kwargs={"literal_binds": True}))
        with store.engine.connect() as conn:
            plan = [row[3] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]
    assert plan and not [step for step in plan if step.startswith("SCAN")], plan
