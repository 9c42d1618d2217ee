"""The demo's click-through model: features, training (Keras or numpy) and evaluation.

The trainer uses Keras 3 when it can be imported (``metatrail[keras]``; the backend is the
user's choice, PyTorch when ``KERAS_BACKEND`` is unset and TensorFlow is absent), else a
numpy logistic regression. Both read the same encoded features and save one file.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from metatrail.consumer.demo.data import Impressions


def encoder_from_schema(schema: dict[str, Any], train: Impressions) -> dict[str, Any]:
    """What turns rows into a feature matrix: vocabularies from the schema and the price
    scaling learned on the training rows. JSON, saved with the model."""
    price = train.price[~np.isnan(train.price)]
    log_price = np.log(price)
    feats = schema["features"]
    return {
        "category": feats["product_category"]["domain"],
        "brand": feats["brand"]["domain"],
        "device": feats["device"]["domain"],
        "log_price_mean": float(log_price.mean()),
        "log_price_std": float(log_price.std() or 1.0),
        "log_price_median": float(np.median(log_price)),
    }


def encode(data: Impressions, enc: dict[str, Any]) -> np.ndarray:
    """Feature matrix: one-hot category, brand (+ unknown), device; scaled log price, a
    missing-price flag, scaled position, and category x price interactions."""
    cols: list[np.ndarray] = []
    cat_onehot = [(data.category == c).astype(np.float32) for c in enc["category"]]
    cols += cat_onehot
    brands = [(data.brand == b).astype(np.float32) for b in enc["brand"]]
    cols += brands + [1.0 - np.sum(brands, axis=0)]
    cols += [(data.device == d).astype(np.float32) for d in enc["device"]]
    missing = np.isnan(data.price)
    log_price = np.where(missing, enc["log_price_median"], np.log(np.where(missing, 1.0, data.price)))
    scaled = ((log_price - enc["log_price_mean"]) / enc["log_price_std"]).astype(np.float32)
    cols += [scaled, missing.astype(np.float32), ((data.position - 12.0) / 7.0).astype(np.float32)]
    cols += [c * scaled for c in cat_onehot]
    return np.stack(cols, axis=1).astype(np.float32)


def keras_available() -> bool:
    """Whether Keras 3 and a usable backend are installed (without importing them)."""
    if importlib.util.find_spec("keras") is None:
        return False
    backend = os.environ.get("KERAS_BACKEND")
    if backend is None:
        backend = "tensorflow" if importlib.util.find_spec("tensorflow") else "torch"
    module = {"tensorflow": "tensorflow", "torch": "torch", "jax": "jax"}.get(backend, backend)
    return importlib.util.find_spec(module) is not None


def import_keras() -> Any:
    if "KERAS_BACKEND" not in os.environ and importlib.util.find_spec("tensorflow") is None:
        # Keras defaults to TensorFlow; the demo runs on whatever backend is present.
        os.environ["KERAS_BACKEND"] = "torch"
    import keras

    return keras


def train_numpy(x: np.ndarray, y: np.ndarray, iterations: int = 12, l2: float = 1.0,
                on_step: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Logistic regression by Newton's method (IRLS) with an L2 penalty: a dozen steps
    converge on the demo's few dozen features. ``on_step(step, log_loss)`` is called
    after each step. Returns weights as lists."""
    xb = np.hstack([x.astype(np.float64), np.ones((x.shape[0], 1))])
    w = np.zeros(xb.shape[1])
    penalty = np.full(xb.shape[1], l2)
    penalty[-1] = 0.0  # no penalty on the bias
    for iteration in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(xb @ w)))
        grad = xb.T @ (p - y) + penalty * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        w -= step
        if on_step is not None:
            p = np.clip(1.0 / (1.0 + np.exp(-(xb @ w))), 1e-12, 1 - 1e-12)
            on_step(iteration, float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
        if float(np.abs(step).max()) < 1e-6:
            break
    return {"weights": w[:-1].tolist(), "bias": float(w[-1])}


def train_keras(
    x: np.ndarray, y: np.ndarray, path: Path, epochs: int, callbacks: list[Any], seed: int = 0
) -> Any:
    """Fit a small dense network and save it to ``path`` (.keras)."""
    keras = import_keras()
    if keras.backend.backend() == "torch":
        import torch

        # A 16-unit network gains nothing from more threads, and on a busy machine
        # OpenMP's spinning threads make it many times slower.
        torch.set_num_threads(1)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((x.shape[1],)),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="ctr_model",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=0.01),
        loss="binary_crossentropy",
        metrics=["accuracy"],  # AUC is computed by the Evaluator (Keras' AUC is slow per batch)
    )
    model.fit(x, y, batch_size=512, epochs=epochs, validation_split=0.1, verbose=0, callbacks=callbacks)
    model.save(path)
    return model


def predict(path: Path, x: np.ndarray) -> np.ndarray:
    """Click probabilities of the model saved at ``path`` (.keras or .json)."""
    if path.suffix == ".keras":
        keras = import_keras()
        model = keras.saving.load_model(path)
        return np.asarray(model.predict(x, batch_size=4096, verbose=0)).reshape(-1)
    params = json.loads(path.read_text())
    z = x @ np.asarray(params["weights"]) + params["bias"]
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged). NaN for a single class."""
    y = y.astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score), dtype=np.float64)
    sorted_scores = score[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def evaluate(data: Impressions, score: np.ndarray) -> dict[str, Any]:
    """AUC, accuracy (threshold 0.5) and click rate overall and per product category."""

    def metrics(mask: np.ndarray) -> dict[str, float]:
        y, s = data.clicked[mask], score[mask]
        return {
            "auc": round(auc(y, s), 4),
            "accuracy": round(float(((s >= 0.5) == (y == 1)).mean()), 4),
            "ctr": round(float(y.mean()), 4),
            "examples": int(mask.sum()),
        }

    every = np.ones(len(data), dtype=bool)
    slices = {c: metrics(data.category == c) for c in sorted(set(data.category.tolist()))}
    return {"overall": metrics(every), "slices": slices}
