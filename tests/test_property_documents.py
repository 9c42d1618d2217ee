"""Property documents: equal to the typed property rows, backfilled by the migration, and
the nodes built from them are the same objects the constructors build.

(Order-insensitivity and idempotence of the documents are covered by the apply property
tests: their canonical dump checks every document against its rows.)
"""

from __future__ import annotations

import dataclasses

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from metatrail import Store
from metatrail.consumer.apply import apply_events
from metatrail.consumer.query import Artifact, Execution
from metatrail.consumer.store.migrate import MIGRATIONS, upgrade
from metatrail.consumer.store.property_document import encode
from metatrail.schemas.events import ArtifactRecorded
from metatrail.schemas.ids import new_id
from metatrail.schemas.values import PropertyValue
from tests.fixtures.dump import mismatched_documents
from tests.fixtures.graphs import pipeline_graph


def test_documents_equal_the_property_rows(engine: Engine) -> None:
    pipeline_graph().apply(engine)
    with engine.connect() as conn:
        assert mismatched_documents(conn) == []
        stored = conn.execute(text("SELECT count(*) FROM mt_artifacts WHERE properties_doc IS NOT NULL")).scalar()
        assert stored and stored > 5


def test_a_wrong_document_is_caught(engine: Engine) -> None:
    pipeline_graph().apply(engine)
    with engine.begin() as conn:
        node_id = conn.execute(text("SELECT id FROM mt_artifacts WHERE properties_doc IS NOT NULL")).scalars().first()
        conn.execute(text("UPDATE mt_artifacts SET properties_doc = '[{},{}]' WHERE id = :id"), {"id": node_id})
    with engine.connect() as conn:
        assert [bad[0] for bad in mismatched_documents(conn)] == [node_id]


def test_migration_backfills_documents(engine: Engine) -> None:
    pipeline_graph().apply(engine)
    with engine.connect() as conn:
        before = dict(conn.execute(text("SELECT id, properties_doc FROM mt_executions")).all())
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    upgrade(engine)
    with engine.connect() as conn:
        assert mismatched_documents(conn) == []
        assert dict(conn.execute(text("SELECT id, properties_doc FROM mt_executions")).all()) == before


@pytest.mark.parametrize("kind", ["artifact", "execution", "context"])
def test_nodes_from_rows_are_ordinary_frozen_nodes(engine: Engine, kind: str) -> None:
    pipeline_graph().apply(engine)
    store = Store(engine)
    nodes = store.find(kind, include_retired=True, limit=1000).items
    assert nodes
    for node in nodes:
        rebuilt = type(node)(**{f.name: getattr(node, f.name) for f in dataclasses.fields(node)})
        assert rebuilt == node
        assert list(vars(node)) == list(vars(rebuilt))
        with pytest.raises(dataclasses.FrozenInstanceError):
            node.name = "changed"  # type: ignore[misc]
    graph = store.lineage(nodes[0].id, "both") if kind != "context" else None
    for n in graph.nodes if graph else ():
        assert isinstance(n, (Artifact, Execution))
        assert type(n)(**{f.name: getattr(n, f.name) for f in dataclasses.fields(n)}) == n


def test_documents_read_back_as_their_values_whatever_writes_them(engine: Engine) -> None:
    """orjson writes documents; what it would write differently from Python's ``json``
    (NaN as null, a lone surrogate, an integer beyond 64 bits) is written by ``json``, so
    every document reads back as the values its rows hold, on every backend."""
    odd = {"nan": float("nan"), "inf": float("-inf"), "text": "caf\u00e9 \U0001f600", "big": 2**70,
           "nested": {"z": [1, 2.5, None, True], "a": "\udc80"}}
    events = []
    for name, value in odd.items():
        events.append(ArtifactRecorded(artifact_id=new_id(), type="Data", uri=f"s3://{name}",
                                       properties={name: PropertyValue.of(value)}))
    apply_events(engine, events)
    with engine.connect() as conn:
        assert not mismatched_documents(conn)
    with Store(engine) as store:
        for event in events:
            (name, expected), = ((k, v.value) for k, v in event.properties.items())
            got = store.get(str(event.artifact_id)).properties[name]
            if isinstance(expected, float) and expected != expected:
                assert got != got
            else:
                assert got == expected, name
    assert encode({"a": 1.5, "é": "ü"}, {}) == '[{"a":1.5,"é":"ü"},{}]'  # UTF-8, not \\u escapes
    assert encode({"n": float("nan")}, {}) == '[{"n":NaN},{}]'
