"""The same fixture graph on SQLite, PostgreSQL and MariaDB gives the same answers."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from metatrail import Store
from metatrail.consumer.apply import apply_events
from metatrail.consumer.query import Artifact, Context
from metatrail.consumer.store.engine import open_engine
from metatrail.schemas.errors import AmbiguousIdError, FilterError, NotFoundError
from metatrail.schemas import ExecutionCompleted, MetricPoint, MetricsLogged
from tests.fixtures.graphs import LONG_PREFIX, T0, gid, pipeline_graph


@pytest.fixture
def store(engine: Engine) -> Iterator[Store]:
    pipeline_graph().apply(engine)
    yield Store(engine)


def names(page: object) -> list[str]:
    return [n.name for n in page.items]  # type: ignore[attr-defined]


FILTERS = [
    ("type = 'Model'", ["model-2", "model-3"]),
    ("type = 'model'", []),  # exact, case-sensitive everywhere (MariaDB's collation ignores case)
    ("properties.accuracy > 0.85 AND properties.accuracy <= 1", ["model-2", "model-3"]),
    ("properties.layers IN (3, 4) AND NOT properties.framework != 'keras'", ["model-2", "model-3"]),
    ("properties.rows >= 1800", ["features-2", "raw-2", "features-3", "raw-3"]),
    ("context.name = 'run-2'", ["eval-2", "features-2", "model-2", "pushed-2", "raw-2"]),
    ("context.type = 'Pipeline' AND type = 'Evaluation'", ["eval-2", "eval-3", "eval-1"]),
    ("custom_properties.validated = TRUE", ["model-3"]),
    ("custom_properties.validated = FALSE", ["model-2"]),
    ("properties.owner = 'it''s mine'", ["raw-1", "raw-2", "raw-3"]),
    (f"custom_properties.note = '{LONG_PREFIX}2'", ["features-2"]),
    (f"custom_properties.note > '{LONG_PREFIX}1'", ["features-2", "features-3"]),
    ("custom_properties.note LIKE 'ppp%3'", ["features-3"]),
    ("name LIKE 'MODEL%'", []),
    ("name LIKE 'mod_l-%' OR name LIKE 'push%'", ["model-2", "model-3", "pushed-1", "pushed-2", "pushed-3"]),
    ("uri = 's3://bucket/base'", ["base"]),
    ("name NOT IN ('base', 'left') AND type = 'Dataset' AND properties.split IS NULL", ["joined", "right"]),
    ("created_at >= '2026-10-01T08:20:00Z' AND created_at < '2026-10-01T08:22'", ["base", "left", "right"]),
    (f"upstream_of('{gid('model-2')}')", ["features-2", "raw-2"]),
    (f"downstream_of('{gid('raw-2')}', 2)", ["features-2"]),
    (f"downstream_of('{gid('base')}')", ["joined", "left", "right"]),
    ("name = 'x'' OR ''1''=''1'", []),
    ("properties.split = 'train'' --'", []),
]


@pytest.mark.parametrize("filter_,expected", FILTERS, ids=[f for f, _ in FILTERS])
def test_artifact_filters(store: Store, filter_: str, expected: list[str]) -> None:
    page = store.artifacts(filter_, order_by="name", limit=100)
    assert sorted(names(page)) == sorted(expected)
    assert store.count("artifact", filter_) == len(expected)


def test_execution_and_context_filters(store: Store) -> None:
    assert names(store.executions("parameters.optimizer = 'adam'", order_by="-parameters.learning_rate")) == [
        "trainer-2", "trainer-1"]
    assert names(store.executions(f"upstream_of('{gid('model-2')}')", order_by="name")) == [
        "examplegen-2", "trainer-2", "transform-2"]
    assert names(store.executions("type = 'Split' AND state = 'COMPLETE'", order_by="name desc")) == ["right-x", "left-x"]
    assert names(store.contexts("context.name = 'pipe'", order_by="name")) == ["run-1", "run-2", "run-3"]
    assert names(store.contexts("properties.seed >= 2", order_by="-created_at")) == ["run-3", "run-2"]


def test_retired_and_placeholders_excluded_unless_asked(store: Store) -> None:
    assert "model-1" not in names(store.artifacts(limit=100))
    everything = store.artifacts(limit=100, include_retired=True).items
    assert "model-1" in [a.name for a in everything]
    assert any(a.is_placeholder and a.id == gid("mystery") for a in everything)
    assert store.count("artifact") == store.count("artifact", include_retired=True) - 2


def test_cursor_pagination_visits_everything_once(store: Store) -> None:
    for order in (None, "name", "-created_at", "properties.rows desc", "uri"):
        seen: list[str] = []
        cursor = None
        while True:
            page = store.artifacts(order_by=order, limit=3, cursor=cursor, include_retired=True)
            seen.extend(a.id for a in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == store.count("artifact", include_retired=True), order
    full = names(store.artifacts(order_by="properties.rows desc", limit=100))
    assert full[:3] == ["raw-3", "features-3", "raw-2"]


def test_lineage_identical_answers(store: Store) -> None:
    graph = store.lineage(gid("model-3"), "upstream")
    assert [(n.name, graph.depths[n.id]) for n in graph.nodes if n.name] == [
        ("model-3", 0), ("trainer-3", 1), ("features-3", 2), ("transform-3", 3), ("raw-3", 4), ("examplegen-3", 5)]
    assert graph.node(gid("mystery")).is_placeholder
    assert not graph.truncated
    data = graph.to_json()
    assert {"source": gid("features-3"), "target": gid("trainer-3"), "kind": "input", "role": "in"} in data["edges"]
    assert {"source": gid("trainer-3"), "target": gid("model-3"), "kind": "output", "role": "out"} in data["edges"]
    assert set(data["nodes"][0]) >= {"id", "kind", "type", "name", "uri", "state"}
    down = store.lineage(gid("features-1"), "downstream", max_hops=2)
    assert sorted(n.name or "" for n in down.nodes) == ["eval-1", "evaluator-1", "features-1", "model-1", "trainer-1"]
    assert down.truncated  # pusher-1 lies three hops away
    both = store.lineage(gid("trainer-2"), "both", types={"Dataset", "Model"})
    assert sorted(n.name or "" for n in both.nodes) == ["features-2", "model-2", "raw-2", "trainer-2"]


def test_latest_compare_history(store: Store) -> None:
    latest = store.latest("Model")
    assert isinstance(latest, Artifact) and latest.name == "model-3"
    assert store.latest("Model", context="run-1") is None  # model-1 is DELETED
    assert store.latest("Model", where="properties.accuracy < 0.95").name == "model-2"  # type: ignore[union-attr]
    cmp = store.compare([gid("run-1"), gid("run-3")])
    assert cmp.params["Trainer.optimizer"] == ("adam", "sgd")
    assert cmp.metrics["Evaluator.auc/all"] == pytest.approx((0.81, 0.83))
    only = store.compare([gid("trainer-1"), gid("trainer-2")], metrics=["loss"])
    assert list(only.metrics) == ["loss"] and only.params["epochs"] == (10, 20)
    hist = store.metric_history("auc/%", key_like=True, execution_type="Evaluator", context="pipe")
    assert [(h.context_name, h.key) for h in hist][:2] == [("run-1", "auc/all"), ("run-1", "auc/slice_a")]
    assert len(hist) == 6


def test_errors(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.get("00000000-0000-0000-0000-000000000000")
    with pytest.raises(NotFoundError):
        store.lineage("nope")
    with pytest.raises(FilterError, match="position 5"):
        store.artifacts("type Model")
    with pytest.raises(FilterError, match="unknown field"):
        store.artifacts("colour = 'red'")
    with pytest.raises(FilterError, match="^cursor: expected the next_cursor") as bad:
        store.artifacts(cursor="garbage!")
    assert bad.value.param == "cursor"


def test_store_open_reads_every_way(store_url: str) -> None:
    """``Store.open`` (pooled, autocommit reads on servers) answers like a Store on an engine."""
    engine = open_engine(store_url)
    pipeline_graph().apply(engine)
    engine.dispose()
    with Store.open(store_url) as store:
        assert names(store.artifacts("type = 'Model'", order_by="name")) == ["model-2", "model-3"]
        assert store.count("execution", "type = 'Trainer'") == 3
        assert len(store.lineage(gid("model-2")).nodes) == 6
        assert store.latest("Model").name == "model-3"  # type: ignore[union-attr]
        assert store.compare([gid("run-2")]).params["seed"] == (2,)
        assert isinstance(store.get(gid("pipe")), Context)
        assert [m.key for m in store.metrics(gid("trainer-1"))] == ["accuracy", "loss"]


def test_time_and_property_filters_together(store: Store) -> None:
    """A property lookup with a time range (the SQLite planner hint path)."""
    got = store.artifacts("created_at >= '2026-10-01T03:00:00' AND properties.rows < 2500 AND type != 'x'", order_by="name")
    assert names(got) == ["features-2", "raw-2"]


def test_ids_resolve_from_unambiguous_prefixes(store: Store) -> None:
    """Every way in takes a prefix, like git: the shortest that names one node works, a
    shorter one that names several lists them, and the case or surrounding spaces a
    terminal adds do not matter."""
    model = gid("model-2")
    every = sorted(
        [n.id for n in store.artifacts(limit=1000).items]
        + [n.id for n in store.executions(limit=1000).items]
        + [n.id for n in store.contexts(limit=1000).items]
    )
    shared = max(len(_common_prefix(model, other)) for other in every if other != model)
    unique = model[: max(shared + 1, 4)]
    assert store.get(unique).id == model
    assert store.get(f"  {unique.upper()} ").id == model
    assert store.resolve(unique) == ("artifact", model)
    assert store.artifact(model).name == "model-2"
    if shared >= 4:
        with pytest.raises(AmbiguousIdError) as info:
            store.get(model[:shared])
        assert model in str(info.value) and len(info.value.candidates) >= 2
    with pytest.raises(NotFoundError, match="too short"):
        store.get("abc")
    with pytest.raises(NotFoundError, match="not an id"):
        store.get("model-2'; --")
    with pytest.raises(NotFoundError, match="is an execution, not an artifact"):
        store.artifact(gid("trainer-2"))  # an execution is not an artifact
    assert store.get(gid("trainer-2")[:-1]).id == gid("trainer-2")


def test_every_prefix_from_eight_characters_finds_its_node(store: Store) -> None:
    """The index range of a prefix ends at its successor (``...f`` carries): no prefix
    length loses its node. The fixture's derived ids differ within eight characters."""
    ids = [gid("model-3"), gid("raw-1"), gid("pipe"), gid("trainer-2")]
    for node_id in ids:
        for cut in range(8, 37):
            assert store.resolve(node_id[:cut])[1] == node_id, node_id[:cut]
    with pytest.raises(NotFoundError):
        store.get("ffffffff")


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _reference_extremes(values: list[float], lo: int, width: int) -> set[tuple[int, float | str]]:
    """Per step bucket: the lowest and the highest finite sample (ties: the first step)
    and the first non-finite one, as (step, value)."""
    kept: set[tuple[int, float | str]] = set()
    for start in range(lo, len(values), width):
        span = list(range(start, min(start + width, len(values))))
        finite = [i for i in span if math.isfinite(values[i])]
        if finite:
            kept.add((min(finite, key=lambda i: (values[i], i)), values[min(finite, key=lambda i: (values[i], i))]))
            high = min(finite, key=lambda i: (-values[i], i))
            kept.add((high, values[high]))
        odd = [i for i in span if not math.isfinite(values[i])]
        if odd:
            kept.add((odd[0], repr(values[odd[0]])))
    return kept


def test_downsampled_series_keeps_each_buckets_extremes(engine: Engine) -> None:
    """Ties (values rounded to a tenth) and non-finite samples: every backend keeps what the
    reference keeps, the first step of a tied extreme included."""
    rng = random.Random(8)
    values = [round(rng.random(), 1) for _ in range(3000)]
    for i in rng.sample(range(3000), 40):
        values[i] = rng.choice([math.nan, math.inf, -math.inf])
    ex = uuid.UUID(int=77)
    points = [MetricPoint(key="loss", value=v, step=i, timestamp=T0) for i, v in enumerate(values)]
    apply_events(engine, [ExecutionCompleted(execution_id=ex, type="Trainer")]
                 + [MetricsLogged(execution_id=ex, points=points[i:i + 500]) for i in range(0, 3000, 500)])
    (series,) = Store(engine).metric_series("loss", executions=[str(ex)], max_points=300)
    assert series.total == 3000 and series.downsampled
    got = {(p.step, p.value if math.isfinite(p.value) else repr(p.value)) for p in series.points}
    assert got == _reference_extremes(values, 0, 30)  # 300 points: 100 buckets of 30 steps


def test_postgresql_reads_plan_each_statement_for_its_parameters(server_databases: object, tmp_path: object) -> None:
    """psycopg prepares a statement run five times, and PostgreSQL would then plan it
    once for an average owner; on skewed metrics that generic plan read a whole
    100,000-sample series for ``MIN(step)``. A ``Store.open`` on PostgreSQL plans every
    statement for its parameters: after many history calls on skewed data, statements
    have been prepared and none ran a generic plan."""
    from tests.fixtures.backends import backend_url

    url = backend_url("postgresql", server_databases, tmp_path)  # type: ignore[arg-type]
    engine = open_engine(url)
    big, small = uuid.UUID(int=91), uuid.UUID(int=92)
    apply_events(engine, [ExecutionCompleted(execution_id=ex, type="Trainer") for ex in (big, small)] + [
        MetricsLogged(execution_id=big, points=[MetricPoint(key="loss", value=float(i % 97), step=i, timestamp=T0)
                                                for i in range(s, s + 500)]) for s in range(0, 5000, 500)] + [
        MetricsLogged(execution_id=small, points=[MetricPoint(key="loss", value=1.0, step=1, timestamp=T0)])])
    engine.dispose()
    with Store.open(url) as store:
        for _ in range(12):
            (series,) = store.metric_series("loss", executions=[str(big)], max_points=300)
            assert series.total == 5000 and series.downsampled
        with store.engine.connect() as conn:
            custom, generic = conn.exec_driver_sql(
                "SELECT COALESCE(SUM(custom_plans), 0), COALESCE(SUM(generic_plans), 0) FROM pg_prepared_statements"
            ).one()
    assert custom > 0 and generic == 0
