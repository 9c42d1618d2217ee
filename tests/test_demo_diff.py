"""``diff`` and ``impact`` on the store the demo builds (its two days), on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metatrail.consumer.cli import main
from metatrail.consumer.query.diffmodel import StepPair
from metatrail.consumer.query.store import Store
from metatrail.consumer.worker.lookup import dispose_shared_engines
from metatrail.producer import emitter

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]


@pytest.fixture
def demo(store_url: str, monkeypatch: pytest.MonkeyPatch,
         capsys: pytest.CaptureFixture[str]) -> Iterator[tuple[Store, str]]:
    """`metatrail demo --framework numpy` with its store on each backend; the store and
    what the demo printed."""
    monkeypatch.setenv("METATRAIL_STORE_URL", store_url)
    try:
        assert main(["demo", "--framework", "numpy"]) == 0
    finally:
        emitter.configure()
        dispose_shared_engines()  # the steps' store lookups
    out = capsys.readouterr().out
    with Store.open(store_url) as store:
        yield store, out


def _by_day(store: Store, type_: str) -> list[str]:
    return [a.id for a in sorted(store.artifacts(f"type = '{type_}'").items, key=lambda a: a.created_at)]


def _one(steps: tuple[StepPair, ...], type_: str) -> StepPair:
    found = [s for s in steps if s.type == type_]
    assert len(found) == 1, [(s.type, s.status) for s in steps]
    return found[0]


def test_diff_of_the_two_days_tells_the_drift_story(demo: tuple[Store, str]) -> None:
    store, out = demo
    model1, model2 = _by_day(store, "Model")
    d = store.diff(model1, model2)
    assert d.aligned and d.pipelines == {"a": ["shoe-ctr"], "b": ["shoe-ctr"]}

    # First difference: ExampleGen read day 2's raw impressions instead of day 1's.
    assert d.verdict.first == "Trainer<examples<ExampleGen"
    assert d.verdict.text.startswith("first difference: ExampleGen read raw/impressions-day2.csv (sha256 ")
    assert "instead of raw/impressions-day1.csv" in d.verdict.text
    assert d.verdict.chain == ("ExampleGen", "Examples impressions", "Trainer", "Model ctr-model")
    example_gen = _one(d.steps, "ExampleGen")
    raw = next(p for p in example_gen.inputs if p.role == "raw")
    assert raw.status == "changed" and raw.a is not None and raw.b is not None
    assert (raw.a.uri or "").endswith("impressions-day1.csv") and (raw.b.uri or "").endswith("impressions-day2.csv")
    changed = [s for s in d.steps if s.kind == "lineage" and s.status == "changed" and s.inputs]
    assert changed[0] is example_gen  # the most upstream step with inputs that changed

    # The schema did not change: day 2's SchemaGen reused day 1's output.
    schema_gen = _one(d.steps, "SchemaGen")
    assert schema_gen.status in ("unchanged", "same")
    if schema_gen.status == "unchanged":
        assert schema_gen.cache is not None and schema_gen.cache.b_reused_a
    assert [(p.role, p.status) for p in schema_gen.outputs] == [("output", "same")]

    # The checks on the data saw it: statistics moved, the validator found the drift.
    stats = _one(d.steps, "StatisticsGen")
    assert stats.kind == "observer" and stats.status == "changed"
    moved = {c.key: c for c in stats.outputs[0].properties}
    assert moved["price_mean"].relative is not None and moved["price_mean"].relative > 0.05
    validator = _one(d.steps, "ExampleValidator")
    assert validator.kind == "observer" and validator.status == "changed"
    anomalies = {c.key: c for c in validator.outputs[0].properties}
    assert (anomalies["drift"].a, anomalies["drift"].b) == (False, True)
    assert anomalies["anomaly_count"].a == 0 and anomalies["anomaly_count"].b > 0
    assert any(line.startswith("ExampleValidator: drift false → true") for line in d.verdict.observed)

    # Men's dress shoes lost the most AUC; the pusher refused day 2.
    auc = next(m for m in d.metrics if m.step == "Evaluator" and m.metric == "auc")
    assert auc.slices[0].slice == "mens_dress" and auc.slices[0].delta is not None and auc.slices[0].delta < -0.1
    assert d.verdict.largest_drop is not None and d.verdict.largest_drop.startswith("Evaluator auc/mens_dress")
    pusher = _one(d.steps, "Pusher")
    assert pusher.kind == "consumer"
    decision = {c.key: c for c in pusher.outputs[0].properties}
    assert (decision["pushed"].a, decision["pushed"].b) == (True, False)

    # The demo told the same story at its end, and how to ask for it.
    short = store.short_ids([model1, model2])
    assert f"metatrail diff {short[model1]} {short[model2]}" in out
    assert "first difference: ExampleGen read raw/impressions-day2.csv" in out
    assert "SchemaGen (served from the cache)" in out or "unchanged: SchemaGen" in out
    assert "largest drop: Evaluator auc/mens_dress" in out


def test_impact_of_day_two_raw_data(demo: tuple[Store, str], store_url: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    store, out = demo
    _, raw2 = _by_day(store, "ImpressionLog")
    model1, model2 = _by_day(store, "Model")
    pushed1, pushed2 = _by_day(store, "PushedModel")
    found = store.impact(raw2)
    ids = {a.id for a in found.artifacts()}
    assert model2 in ids and pushed2 in ids
    assert model1 not in ids and pushed1 not in ids
    assert [g.type for g in found.groups][:2] == ["PushedModel", "Model"]
    decision = found.groups[0].artifacts[0]
    assert decision.deployed is False and "mens_dress" in decision.artifact.properties["reason"]
    assert [s.name for s in found.steps][0] == "example_gen"
    short = store.short_ids([raw2, model1, model2])
    assert f"metatrail impact {short[raw2]} --dry-run" in out

    assert main(["impact", short[raw2], "--url", store_url]) == 0
    printed = capsys.readouterr().out
    assert short[model2] in printed and short[model1] not in printed and "not deployed" in printed
