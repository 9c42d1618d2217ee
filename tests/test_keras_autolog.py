"""``metatrail.keras.autolog()`` on real Keras 3 fits (PyTorch CPU backend, tiny models)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from metatrail import Store, run  # noqa: E402
from metatrail.consumer.store.engine import open_engine  # noqa: E402
from metatrail.consumer.store.migrate import upgrade  # noqa: E402
from metatrail.keras import MetadataCallback, autolog  # noqa: E402
from metatrail.producer import emitter  # noqa: E402

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

ORIGINAL = {name: getattr(keras.Model, name) for name in ("fit", "evaluate", "predict")}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path}/metadata.db"
    emitter.configure(transport="embedded", store_url=url, spool_path=tmp_path / "spool.db", strict=True)
    engine = open_engine(url)
    upgrade(engine)  # Store.open reads an existing store only (it creates nothing)
    engine.dispose()
    with Store.open(url) as st:
        yield st
    emitter.configure()


@pytest.fixture
def autologged(store: Store, tmp_path: Path) -> Iterator[Store]:
    autolog(model_dir=tmp_path / "models")
    try:
        yield store
    finally:
        autolog(disable=True)


def _data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def _model(name: str = "tiny") -> Any:
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")], name=name)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _executions(store: Store, type_name: str) -> list[Any]:
    assert emitter.flush(30)
    return list(store.executions(f"type = '{type_name}'", limit=50).items)


def _inputs(store: Store, execution_id: str) -> dict[str, str]:
    """role -> artifact id of an execution's INPUT edges."""
    graph = store.lineage(execution_id, "upstream", max_hops=1)
    return {e.role: e.source for e in graph.edges if e.target == execution_id}


def test_autolog_records_fit_and_the_evaluate_and_predict_of_the_fitted_model(autologged: Store) -> None:
    x, y = _data()
    model = _model()
    with run("autolog-run", pipeline="keras-autolog"):
        model.fit(x, y, validation_data=_data(16, seed=1), epochs=2, verbose=0)
        results = model.evaluate(x, y, verbose=0, return_dict=True)
        predictions = model.predict(x[:8], verbose=0)
    assert predictions.shape == (8, 1)

    [fit] = _executions(autologged, "keras.fit")
    assert fit.state == "COMPLETE" and fit.properties["epochs"] == 2
    [model_artifact] = [a for a in autologged.artifacts("type = 'Model'").items]
    [evaluate] = _executions(autologged, "keras.evaluate")  # fit's validation is not one
    [predict] = _executions(autologged, "keras.predict")
    assert evaluate.state == predict.state == "COMPLETE"
    assert _inputs(autologged, evaluate.id)["model"] == model_artifact.id
    assert _inputs(autologged, predict.id)["model"] == model_artifact.id
    assert "predict_x" in _inputs(autologged, predict.id)
    got = {p.key: p.value for p in autologged.metrics(evaluate.id)}
    assert got["loss"] == pytest.approx(results["loss"], rel=1e-5)


def test_an_explicit_callback_is_used_once_and_serves_later_evaluations(autologged: Store, tmp_path: Path) -> None:
    x, y = _data()
    model = _model()
    cb = MetadataCallback(model_dir=tmp_path / "mine")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])
    model.evaluate(x, y, verbose=0)  # no callback given: the fit's (explicit) one
    model.evaluate(x, y, verbose=0, callbacks=[cb])  # given again: still one record each

    [fit] = _executions(autologged, "keras.fit")
    assert len(autologged.artifacts("type = 'Model'").items) == 1
    assert cb.model_artifact is not None and Path(cb.model_artifact.uri).parent == (tmp_path / "mine").resolve()
    evaluations = _executions(autologged, "keras.evaluate")
    assert len(evaluations) == 2
    assert {_inputs(autologged, e.id)["model"] for e in evaluations} == {str(cb.model_artifact.id)}


def test_a_model_not_fitted_under_autolog_is_not_recorded_by_evaluate(store: Store, tmp_path: Path) -> None:
    x, y = _data()
    model = _model()
    with run("before-autolog"):  # (the run is recorded: the store exists)
        model.fit(x, y, epochs=1, verbose=0)  # before autolog
        autolog(model_dir=tmp_path)
        try:
            model.evaluate(x, y, verbose=0)
            model.predict(x, verbose=0)
        finally:
            autolog(disable=True)
    assert _executions(store, "keras.fit") == []
    assert _executions(store, "keras.evaluate") == _executions(store, "keras.predict") == []


def test_disable_puts_keras_methods_back(store: Store, tmp_path: Path) -> None:
    autolog(model_dir=tmp_path)
    autolog(model_dir=tmp_path)  # idempotent: wrapped once
    assert keras.Model.fit is not ORIGINAL["fit"]
    assert keras.Model.fit.__wrapped__ is ORIGINAL["fit"]
    autolog(disable=True)
    autolog(disable=True)
    for name, original in ORIGINAL.items():
        assert getattr(keras.Model, name) is original
        assert name not in keras.Model.__dict__  # inherited again, as before
    x, y = _data()
    with run("after-autolog"):
        _model().fit(x, y, epochs=1, verbose=0)
    assert _executions(store, "keras.fit") == []


def test_predict_with_the_callback_passed_by_hand(store: Store, tmp_path: Path) -> None:
    x, y = _data()
    model = _model()
    cb = MetadataCallback(model_dir=tmp_path)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[cb])
    model.predict(x, verbose=0, callbacks=[cb])
    [predict] = _executions(store, "keras.predict")
    assert _inputs(store, predict.id)["model"] == str(cb.model_artifact.id)  # type: ignore[union-attr]


def test_bad_options_are_refused_before_anything_is_patched() -> None:
    with pytest.raises(ValueError, match="log_every_n_batches"):
        autolog(log_every_n_batches=0)
    assert keras.Model.fit is ORIGINAL["fit"]
