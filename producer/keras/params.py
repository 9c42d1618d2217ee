"""A model and the ``fit`` call training it, as the parameters of the fit's execution.

What runs compare on: architecture (layers, parameter counts), optimizer and its
hyperparameters, loss, and the scalar ``fit`` arguments. Parts a model cannot report (not
built yet, custom objects) are left out rather than failing the record.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras

#: ``fit`` arguments recorded as parameters when they are scalars.
_FIT_ARGS = (
    "batch_size", "epochs", "initial_epoch", "shuffle", "steps_per_epoch",
    "validation_split", "validation_steps", "validation_batch_size", "validation_freq",
)


def fit_parameters(
    model: Any, model_name: str, args: Mapping[str, Any], fit_params: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The parameters of a fit of ``model``: ``args`` are the arguments of the ``fit``
    call, ``fit_params`` the callback's ``params`` from Keras (epochs, steps). Parameter
    counts, layer details and optimizer settings the model cannot report are skipped."""
    params: dict[str, Any] = {"model_name": model_name, "model_class": type(model).__name__}
    params["keras_version"] = keras.__version__
    params["backend"] = keras.backend.backend()
    try:
        params["parameter_count"] = int(model.count_params())
        params["trainable_parameter_count"] = int(
            sum(int(_size(w)) for w in model.trainable_weights)
        )
    except Exception:
        pass
    layers = []
    for layer in getattr(model, "layers", []):
        entry = {"name": layer.name, "class": type(layer).__name__}
        try:
            entry["params"] = int(layer.count_params())
            entry["output_shape"] = str(getattr(layer, "output", None) and layer.output.shape)
        except Exception:
            pass
        layers.append(entry)
    params["layers"] = layers
    opt = getattr(model, "optimizer", None)
    if opt is not None:
        params["optimizer"] = type(opt).__name__
        try:
            for key, value in opt.get_config().items():
                if isinstance(value, (int, float, str, bool)) and key != "name":
                    params[f"optimizer.{key}"] = value
        except Exception:
            pass
    loss = getattr(model, "loss", None)
    if loss is not None:
        params["loss"] = loss if isinstance(loss, str) else getattr(loss, "name", type(loss).__name__)
    for key in _FIT_ARGS:
        value = args.get(key)
        if isinstance(value, (int, float, str, bool)):
            params[key] = value
    if fit_params:
        for key in ("epochs", "steps"):
            if isinstance(fit_params.get(key), int):
                params["epochs" if key == "epochs" else "steps_per_epoch"] = fit_params[key]
    if args.get("class_weight") is not None:
        params["class_weight"] = {str(k): float(v) for k, v in dict(args["class_weight"]).items()}
    return params


def _size(weight: Any) -> int:
    n = 1
    for d in weight.shape:
        n *= int(d)
    return n
