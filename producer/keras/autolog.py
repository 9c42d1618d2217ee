"""``autolog()``: record every Keras ``fit``, and the ``evaluate`` / ``predict`` calls of
the models fitted under it, without passing a callback (as MLflow's autolog does).

It replaces ``keras.Model.fit``, ``evaluate`` and ``predict`` with thin wrappers, and
``autolog(disable=True)`` puts the originals back. The wrappers only decide which
``MetadataCallback`` a call gets; recording is the callback's job:

* ``fit`` without a ``MetadataCallback`` among its callbacks gets a new one, built with the
  options given to ``autolog``; a fit given one explicitly keeps it and gets no second;
* ``evaluate`` / ``predict`` of a model whose last fit ran under autolog get that fit's
  callback (so the execution's INPUT is the model that fit saved), unless a
  ``MetadataCallback`` is passed explicitly; the validation that ``fit`` runs through
  ``evaluate`` is left alone (it is recorded as the fit's ``val_*`` metrics);
* models never fitted under autolog are not recorded by ``evaluate`` / ``predict``.

Enabling and disabling are thread-safe and idempotent; enabling again replaces the options.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras

from metatrail.producer.keras.callback import MetadataCallback
from metatrail.producer.keras.values import DEFAULT_MAX_DIGEST_BYTES

#: The methods replaced on ``keras.Model``.
METHODS = ("fit", "evaluate", "predict")
_ABSENT = object()

_lock = threading.Lock()
#: method name -> what ``keras.Model.__dict__`` held before (``_ABSENT``: inherited).
_saved: dict[str, Any] = {}
#: Arguments of the ``MetadataCallback`` each fit gets.
_options: dict[str, Any] = {}
#: The callback of each model's last fit under autolog (models are not kept alive).
_fitted: weakref.WeakKeyDictionary[Any, MetadataCallback] = weakref.WeakKeyDictionary()


def autolog(
    *,
    disable: bool = False,
    log_every_n_batches: int | None = None,
    log_model: bool = True,
    model_dir: str | os.PathLike[str] | None = None,
    max_digest_bytes: int = DEFAULT_MAX_DIGEST_BYTES,
) -> None:
    """Record every ``fit`` of a Keras model in this process, and the ``evaluate`` and
    ``predict`` calls of models fitted under it (see the module doc); the options are
    ``MetadataCallback``'s. ``autolog(disable=True)`` restores Keras' own methods. Raises
    ``ValueError`` for a bad option; never raises from a training call."""
    if log_every_n_batches is not None and log_every_n_batches <= 0:
        raise ValueError("log_every_n_batches must be a positive integer or None")
    with _lock:
        if disable:
            for name, before in _saved.items():
                if before is _ABSENT:
                    delattr(keras.Model, name)
                else:
                    setattr(keras.Model, name, before)
            _saved.clear()
            return
        _options.clear()
        _options.update(
            log_every_n_batches=log_every_n_batches,
            log_model=log_model,
            model_dir=Path(model_dir) if model_dir is not None else None,
            max_digest_bytes=max_digest_bytes,
        )
        if _saved:
            return  # already on: the new options apply to the next fit
        for name in METHODS:
            original = getattr(keras.Model, name)
            _saved[name] = keras.Model.__dict__.get(name, _ABSENT)
            setattr(keras.Model, name, _wrap(name, original))


def enabled() -> bool:
    """Whether ``autolog()`` is on."""
    return bool(_saved)


def _ours(callbacks: Any) -> MetadataCallback | None:
    """The ``MetadataCallback`` among ``callbacks`` (a list or Keras' ``CallbackList``)."""
    listed = getattr(callbacks, "callbacks", callbacks)
    for cb in listed or ():
        if isinstance(cb, MetadataCallback):
            return cb
    return None


def _wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            bound = signature.bind(self, *args, **kwargs)
            callbacks = bound.arguments.get("callbacks")
            if callbacks is not None and not isinstance(callbacks, (list, tuple)):
                pass  # Keras' own CallbackList (fit's validation): left as it is
            elif _ours(callbacks) is None:
                cb = _callback_for(name, self)
                if cb is not None:
                    bound.arguments["callbacks"] = [*(callbacks or ()), cb]
                    args, kwargs = bound.args[1:], bound.kwargs
            elif name == "fit":
                _fitted[self] = _ours(callbacks)  # type: ignore[assignment]  # not None here
        except Exception:  # a call Keras itself will reject: let it say why
            pass
        return original(self, *args, **kwargs)

    wrapper.__metatrail_autolog__ = True  # type: ignore[attr-defined]
    return wrapper


def _callback_for(method: str, model: Any) -> MetadataCallback | None:
    """The callback a call of ``model.<method>`` without one gets (None: not recorded)."""
    if method == "fit":
        cb = MetadataCallback(**_options)
        _fitted[model] = cb
        return cb
    cb = _fitted.get(model)
    if cb is None or cb.fitting:  # never fitted under autolog / fit's own validation
        return None
    return cb
