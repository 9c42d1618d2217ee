"""MetadataCallback on real Keras 3 fits (PyTorch CPU backend) into the embedded store."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

keras = pytest.importorskip("keras")

from metatrail.consumer.query.store import Store  # noqa: E402
from metatrail.consumer.store.engine import open_engine  # noqa: E402
from metatrail.consumer.store.migrate import upgrade  # noqa: E402
from metatrail.producer import emitter  # noqa: E402
from metatrail.producer.artifacts import Dataset  # noqa: E402
from metatrail.keras import MetadataCallback  # noqa: E402
from metatrail.producer.runs import run  # noqa: E402

pytestmark = [
    # Keras' torch variables implement __array__ without numpy 2's copy keyword.
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """An embedded store in tmp_path; events are flushed before the test reads it."""
    url = f"sqlite:///{tmp_path}/metadata.db"
    emitter.configure(transport="embedded", store_url=url, spool_path=tmp_path / "spool.db", strict=True)
    engine = open_engine(url)
    upgrade(engine)  # Store.open reads an existing store only (it creates nothing)
    engine.dispose()
    st = Store.open(url)
    yield st
    st.close()
    emitter.configure()  # close this test's emitter (its relay thread and spool)


def _read(store: Store) -> Store:
    assert emitter.flush(30), "events were not delivered"
    return store


def _data(n: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype("float32")
    return x, y


def _model(name: str = "tiny") -> Any:
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1, activation="sigmoid")],
        name=name,
    )
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="binary_crossentropy", metrics=["accuracy"])
    return model


def _fit_executions(store: Store) -> list[Any]:
    return list(_read(store).executions("type = 'keras.fit'", limit=50).items)


def test_fit_records_execution_params_inputs_metrics_and_model(store: Store, tmp_path: Path) -> None:
    x, y = _data()
    vx, vy = _data(32, seed=1)
    cb = MetadataCallback(model_dir=tmp_path / "models")
    with run("fit-run", pipeline="keras-tests"):
        _model().fit(x, y, validation_data=(vx, vy), epochs=3, batch_size=16, verbose=0, callbacks=[cb])

    [ex] = _fit_executions(store)
    assert ex.state == "COMPLETE"
    assert ex.name == "tiny"
    p = ex.properties
    assert p["model_name"] == "tiny" and p["optimizer"] == "Adam"
    assert p["optimizer.learning_rate"] == pytest.approx(0.01)
    assert p["epochs"] == 3 and p["batch_size"] == 16
    assert p["parameter_count"] == 4 * 4 + 4 + 4 + 1
    assert [layer["class"] for layer in p["layers"]] == ["Dense", "Dense"]

    points = store.metrics(ex.id)
    loss_steps = sorted(pt.step for pt in points if pt.key == "loss")
    assert loss_steps == [0, 1, 2]
    assert {"accuracy", "val_loss", "val_accuracy"} <= {pt.key for pt in points}

    graph = store.lineage(ex.id, "both", max_hops=1)
    roles = {(e.kind, e.role) for e in graph.edges}
    assert {("input", "train_x"), ("input", "train_y"), ("input", "validation_x"), ("input", "validation_y")} <= roles
    inputs = {graph.node(e.source).name: graph.node(e.source) for e in graph.edges if e.kind == "input"}
    assert inputs["train_x"].digest and inputs["train_x"].digest.startswith("sha256:")
    assert inputs["train_x"].properties["shape"] == [96, 4]

    [model_edge] = [e for e in graph.edges if e.kind == "output" and e.role == "model"]
    model_art = graph.node(model_edge.target)
    assert model_art.type == "Model" and model_art.digest and model_art.digest.startswith("sha256:")
    assert Path(model_art.uri or "").exists() and str(model_art.uri).endswith(".keras")
    assert cb.model_artifact is not None and str(cb.model_artifact.id) == model_art.id


def test_same_array_content_is_the_same_input_artifact(store: Store) -> None:
    x, y = _data()
    for _ in range(2):
        _model().fit(x.copy(), y.copy(), epochs=1, verbose=0, callbacks=[MetadataCallback(log_model=False)])
    fits = _fit_executions(store)
    assert len(fits) == 2
    ids = set()
    for ex in fits:
        g = store.lineage(ex.id, "upstream", max_hops=1)
        ids |= {e.source for e in g.edges if e.role == "train_x"}
    assert len(ids) == 1


def test_checkpoints_and_explicit_inputs_are_recorded(store: Store, tmp_path: Path) -> None:
    x, y = _data()
    data_file = tmp_path / "train.npz"
    np.savez(data_file, x=x, y=y)
    ckpt = keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt" / "e{epoch:02d}.keras"))
    cb = MetadataCallback(log_model=False, inputs={"source": str(data_file), "catalog": Dataset("s3://bucket/catalog")})
    # The checkpoint callback runs after ours each epoch: its files are picked up later.
    _model().fit(x, y, epochs=3, verbose=0, callbacks=[cb, ckpt])

    [ex] = _fit_executions(store)
    g = store.lineage(ex.id, "both", max_hops=1)
    outs = [g.node(e.target) for e in g.edges if e.kind == "output" and e.role == "checkpoint"]
    assert sorted(Path(a.uri or "").name for a in outs) == ["e01.keras", "e02.keras", "e03.keras"]
    assert all(a.digest and a.digest.startswith("sha256:") for a in outs)
    assert sorted(a.properties["epoch"] for a in outs) == [0, 1, 2]
    inputs = {e.role: g.node(e.source) for e in g.edges if e.kind == "input"}
    assert inputs["source"].uri == str(data_file) and inputs["source"].digest
    assert inputs["catalog"].uri == "s3://bucket/catalog"


def test_batch_metrics_every_n_batches(store: Store) -> None:
    x, y = _data(96)
    cb = MetadataCallback(log_every_n_batches=2, log_model=False)
    _model().fit(x, y, epochs=2, batch_size=16, verbose=0, callbacks=[cb])  # 6 batches per epoch
    [ex] = _fit_executions(store)
    steps = sorted(pt.step for pt in store.metrics(ex.id, "batch/loss"))
    assert steps == [2, 4, 6, 8, 10, 12]


class _Boom(keras.layers.Layer):  # type: ignore[misc]
    """Raises in the forward pass once ``armed``."""

    armed = False

    def call(self, inputs: Any) -> Any:
        if _Boom.armed:
            raise FloatingPointError("loss exploded")
        return inputs


def test_exception_in_training_step_records_failed(store: Store) -> None:
    x, y = _data()
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), _Boom(), keras.layers.Dense(1, activation="sigmoid")], name="boom")
    model.compile(optimizer="sgd", loss="binary_crossentropy")

    class Arm(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            _Boom.armed = True

    try:
        with pytest.raises(FloatingPointError, match="loss exploded"):
            model.fit(x, y, epochs=3, verbose=0, callbacks=[MetadataCallback(log_model=False), Arm()])
    finally:
        _Boom.armed = False
    [ex] = _fit_executions(store)
    assert ex.state == "FAILED"
    assert ex.error_type and ex.error_type.endswith("FloatingPointError")
    assert "loss exploded" in (ex.error_message or "")
    assert [pt.step for pt in store.metrics(ex.id, "loss")] == [0]
    assert not getattr(model.train_function, "_metatrail_wrapped", False)  # restored


def test_exception_outside_the_step_records_failed(store: Store) -> None:
    x, y = _data()

    class Fails(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            if epoch == 1:
                raise RuntimeError("lost the data source")

    with pytest.raises(RuntimeError, match="lost the data source"):
        _model().fit(x, y, epochs=3, verbose=0, callbacks=[MetadataCallback(log_model=False), Fails()])
    # No gc pass needed: the fit's CallbackList goes when pytest.raises drops the exception.
    [ex] = _fit_executions(store)
    assert ex.state == "FAILED"
    assert ex.error_type and ex.error_type.endswith("FitAborted")


def test_evaluate_is_recorded_with_the_model_as_input(store: Store, tmp_path: Path) -> None:
    x, y = _data()
    model = _model()
    cb = MetadataCallback(model_dir=tmp_path)
    model.fit(x, y, validation_split=0.25, epochs=2, verbose=0, callbacks=[cb])
    results = model.evaluate(x, y, verbose=0, callbacks=[cb], return_dict=True)

    [ev] = list(_read(store).executions("type = 'keras.evaluate'").items)
    assert ev.state == "COMPLETE"
    got = {pt.key: pt.value for pt in store.metrics(ev.id)}
    assert got["loss"] == pytest.approx(results["loss"], rel=1e-5)
    assert got["accuracy"] == pytest.approx(results["accuracy"], rel=1e-5)
    g = store.lineage(ev.id, "upstream", max_hops=1)
    model_inputs = [e for e in g.edges if e.role == "model"]
    assert model_inputs and model_inputs[0].source == str(cb.model_artifact.id)  # type: ignore[union-attr]
    # validation inside fit is not a separate evaluation
    assert len(list(store.executions("type = 'keras.evaluate'").items)) == 1


def test_recording_failure_never_reaches_the_training_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    emitter.configure(transport="embedded", store_url=f"sqlite:///{tmp_path}/m.db", spool_path=tmp_path / "s.db", strict=True)

    def broken(*a: Any, **k: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(emitter, "emit", broken)
    x, y = _data()
    history = _model().fit(
        x, y, epochs=2, verbose=0, callbacks=[MetadataCallback(log_every_n_batches=1, model_dir=tmp_path)]
    )
    assert len(history.history["loss"]) == 2


def test_import_producer_does_not_import_keras() -> None:
    import subprocess
    import sys

    code = "import sys, metatrail, metatrail.producer.recorder; sys.exit(1 if 'keras' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_run_argument_attributes_the_fit_to_that_run(store: Store) -> None:
    x, y = _data()
    with run("chosen-run", pipeline="keras-tests") as scope:
        pass
    # The fit happens outside the with block: run= says where it belongs.
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[MetadataCallback(run=scope, log_model=False)])
    [ex] = _fit_executions(store)
    assert [e.id for e in store.executions("context.name = 'chosen-run'").items] == [ex.id]


def test_a_model_that_cannot_be_saved_still_completes_the_fit(store: Store, tmp_path: Path) -> None:
    x, y = _data()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the model folder should be")
    _model().fit(x, y, epochs=1, verbose=0, callbacks=[MetadataCallback(model_dir=blocker)])
    [ex] = _fit_executions(store)
    assert ex.state == "COMPLETE"
    assert "model_save_error" in ex.custom_properties


def test_a_program_dying_in_fit_records_the_fit_failed_with_its_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = tmp_path / "dies.py"
    script.write_text(
        "import keras, numpy as np\n"
        "from metatrail.keras import MetadataCallback\n"
        "class Fails(keras.callbacks.Callback):\n"
        "    def on_epoch_begin(self, epoch, logs=None):\n"
        "        if epoch == 1:\n"
        "            raise RuntimeError('lost the data source')\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
        "m.compile(optimizer='sgd', loss='mse')\n"
        "x = np.ones((32, 4), 'float32'); y = np.ones(32, 'float32')\n"
        "m.fit(x, y, epochs=3, verbose=0, callbacks=[MetadataCallback(log_model=False), Fails()])\n"
    )
    env = {**os.environ, "KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch")}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, timeout=240)
    assert done.returncode == 1 and b"lost the data source" in done.stderr
    with Store.open(f"sqlite:///{tmp_path}/.metatrail/metadata.db") as st:
        [ex] = st.executions("type = 'keras.fit'").items
        assert ex.state == "FAILED"
        assert ex.error_type == "builtins.RuntimeError" and ex.error_message == "lost the data source"
