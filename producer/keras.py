"""Keras 3 callback: record a ``fit`` (and later ``evaluate`` calls) as executions.

Install with ``pip install metatrail[keras]``; ``import producer`` never imports Keras::

    from producer.keras import MetadataCallback
    with producer.run("nightly", pipeline="ctr"):
        cb = MetadataCallback(log_every_n_batches=50)
        model.fit(x, y, validation_data=(vx, vy), epochs=5, callbacks=[cb, checkpoint])
        model.evaluate(tx, ty, callbacks=[cb])

What one ``fit`` records: an execution of type ``keras.fit`` named after the model, with
its parameters (model name, layer summary, parameter counts, optimizer class and
hyperparameters, loss, epochs, batch size and the other ``fit`` arguments); the training
and validation data as INPUT artifacts (``Artifact``\\ s, file paths, objects with a
``name`` such as named datasets, numpy arrays with a sha256 digest of their bytes up to
``max_digest_bytes``); every epoch's logs as metrics with ``step = epoch`` (and every n
batches, key ``batch/<name>``, step = global batch number; spooled in groups, at least
once a second and at each epoch's end, so a batch costs a few microseconds); every file a
``keras.callbacks.ModelCheckpoint`` of the same fit writes, and the final model saved to
``model_dir`` (``log_model=True``), as OUTPUT ``Model`` artifacts with digests. An
``evaluate()`` given the callback afterwards is recorded as a ``keras.evaluate``
execution whose INPUT is that model and whose metrics are the results.

Failures. Keras 3 has no ``on_train_error`` hook, so a failed fit is detected two ways:
the model's ``train_function`` / ``test_function`` are wrapped for the length of the fit
(an exception in a training or validation step is recorded FAILED with its type, message
and traceback at the moment it propagates, then re-raised unchanged); and the fit's
``CallbackList`` carries a finalizer, so a fit that ends without ``on_train_end`` for any
other reason (a data generator or another callback raised) is recorded FAILED when that
list is released: under CPython, as soon as the exception that ended ``fit`` (whose
traceback holds the list) is dropped by the code that handles it; that record carries
``FitAborted``, not the original error. If nothing handles it and the program dies, an
exit hook (run before the producer's exit flush) records the fit FAILED with the error
that ended the program.

Nothing here raises into the training loop: every hook catches and logs its own errors.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from producer import emitter, recorder
from producer.artifacts import Artifact, Dataset, Model
from producer.build import build
from producer.context import RunScope
from producer.recorder import ExecutionHandle
from schemas.events import MetricsLogged

log = logging.getLogger("metatrail.producer.keras")

#: Arrays larger than this are recorded without a content digest (hashing would stall fit).
DEFAULT_MAX_DIGEST_BYTES = 256 << 20
#: Where final models go when no ``model_dir`` is given.
DEFAULT_MODEL_DIR = Path(".metatrail/models")
#: Batch metrics are spooled as one event per this many points, or per this many seconds,
#: and at every epoch's end (one event per batch would cost a spool append per batch).
MAX_BUFFERED_POINTS = 2_000
BATCH_FLUSH_S = 1.0
#: Callbacks whose fit is running, failed at exit if still open (see ``_fail_open_fits``).
_OPEN_FITS: weakref.WeakSet[MetadataCallback] = weakref.WeakSet()
_ATEXIT_LOCK = threading.Lock()
_atexit_registered = False
_FIT_ARGS = (
    "batch_size", "epochs", "initial_epoch", "shuffle", "steps_per_epoch",
    "validation_split", "validation_steps", "validation_batch_size", "validation_freq",
)


class MetadataCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Records the ``fit`` it is given to (see the module doc). One instance per fit is
    the simplest; reusing one across several fits records one execution per fit.

    ``run``: the run to record into — the scope ``with producer.run(...) as scope`` gives,
    or that ``run`` object; default the run open around the fit, if any.
    ``log_every_n_batches``: also log batch metrics every n batches.
    ``log_model``: save the final model to ``model_dir`` (default ``./.metatrail/models``,
    next to the embedded store) and record it. ``inputs``: extra named input artifacts
    (name -> Artifact or path). ``max_digest_bytes``: arrays above it get no digest.
    """

    #: The batch hook is thread-safe: Keras may keep dispatching batch hooks to its thread
    #: pool (off the training thread) instead of running every callback's inline.
    async_safe = True

    def __init__(
        self,
        run: Any = None,
        log_every_n_batches: int | None = None,
        log_model: bool = True,
        model_dir: str | os.PathLike[str] | None = None,
        *,
        inputs: Mapping[str, Artifact | str | os.PathLike[str]] | None = None,
        max_digest_bytes: int = DEFAULT_MAX_DIGEST_BYTES,
    ) -> None:
        super().__init__()
        if log_every_n_batches is not None and log_every_n_batches <= 0:
            raise ValueError("log_every_n_batches must be a positive integer or None")
        self.run = run
        self.log_every_n_batches = log_every_n_batches
        self._every = log_every_n_batches or 1
        if log_every_n_batches is not None:
            self.on_train_batch_end = self._on_train_batch_end
        self.log_model = log_model
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.extra_inputs = dict(inputs or {})
        self.max_digest_bytes = max_digest_bytes
        #: The Model artifact of the last fit's final model (input of later evaluate()).
        self.model_artifact: Artifact | None = None
        #: Checkpoint artifacts recorded in the last fit.
        self.checkpoints: list[Artifact] = []
        self._rec: ExecutionHandle | None = None
        self._eval: ExecutionHandle | None = None
        self._in_fit = False
        self._checkpointers: list[Any] = []
        self._pending_epochs: list[tuple[int, dict[str, Any]]] = []
        self._seen_files: set[tuple[str, int, int]] = set()
        self._points: list[Any] = []
        self._lock = threading.Lock()
        self._epoch = 0
        self._counter = itertools.count(1)
        self._flushed_at = 0.0
        self._wrapped: dict[str, Any] = {}
        self._started_at = 0.0

    # ------------------------------------------------------------------ fit lifecycle
    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        try:
            self._begin_fit()
        except Exception:  # never into the training loop
            log.warning("metatrail: could not start recording fit", exc_info=True)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch = epoch
        try:
            self._scan_checkpoints()
        except Exception:
            log.warning("metatrail: checkpoint scan failed", exc_info=True)

    def _on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        # Installed as on_train_batch_end only when batch logging is on. With async_safe,
        # Keras may run it in its callback thread pool (backends that allow it), several
        # at once: the step comes from (epoch, batch), the buffer is guarded by a lock.
        steps = self.params.get("steps") if self.params else None
        step = self._epoch * steps + batch + 1 if isinstance(steps, int) else next(self._counter)
        if step % self._every or self._rec is None:
            return
        try:
            points = recorder.metric_points(_numbers(logs, "batch/"), step)
            with self._lock:
                self._points.extend(points)
                due = len(self._points) >= MAX_BUFFERED_POINTS or time.monotonic() - self._flushed_at >= BATCH_FLUSH_S
            if due:
                self._flush_points()
        except Exception:
            log.warning("metatrail: batch metrics not recorded", exc_info=True)

    def _flush_points(self) -> None:
        """Spool the buffered batch metrics as one ``MetricsLogged`` event."""
        with self._lock:
            points, self._points = self._points, []
            self._flushed_at = time.monotonic()
        rec = self._rec
        if not points or rec is None:
            return
        try:
            run_id = rec.scope.run_id if rec.scope is not None else None
            emitter.emit([build(MetricsLogged, run_id=run_id, execution_id=rec.execution_id, points=points)])
        except Exception as exc:
            recorder.report("log_metrics", exc)

    def _list_released(self, rec: ExecutionHandle) -> None:
        """The fit's CallbackList is gone: if that fit never ended, it failed."""
        if rec.done:
            return
        error = FitAborted("fit raised before on_train_end, outside a training step")
        if rec is self._rec:
            self._failed(error)
        else:
            _record_failure(rec, error)

    def _failed(self, exc: BaseException) -> None:
        """Record the running fit FAILED with ``exc`` (after its buffered metrics)."""
        rec = self._rec
        if rec is None or rec.done:
            return
        try:
            self._flush_points()
            rec.fail(exc)
        except Exception:
            log.warning("metatrail: could not record the failed fit", exc_info=True)
        finally:  # the fit is over: later evaluate() calls are evaluations again
            self._unwrap()
            self._in_fit = False
            _OPEN_FITS.discard(self)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._rec is None:
            return
        try:
            self._flush_points()
            self._rec.log_metrics(_numbers(logs), step=epoch)
            self._pending_epochs.append((epoch, dict(logs or {})))
            self._scan_checkpoints()
        except Exception:
            log.warning("metatrail: epoch metrics not recorded", exc_info=True)

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        try:
            self._end_fit(logs or {})
        except Exception:
            log.warning("metatrail: could not complete the fit's record", exc_info=True)
        finally:
            self._unwrap()
            self._in_fit = False
            _OPEN_FITS.discard(self)

    # ----------------------------------------------------------- evaluate lifecycle
    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit:
            return  # validation inside fit: reported as val_* in the epoch logs
        try:
            inputs = {"model": self.model_artifact} if self.model_artifact is not None else {}
            args = self._caller_args("evaluate")
            inputs.update(self._data_inputs(args, validation=False))
            params = {"model_name": self._model_name()}
            params.update({k: args[k] for k in ("batch_size", "steps") if isinstance(args.get(k), int)})
            self._eval = recorder.start_execution(
                "keras.evaluate", self._model_name(), params,
                [(a, role) for role, a in inputs.items()], scope=self._scope(),
            )
        except Exception:
            log.warning("metatrail: could not start recording evaluate", exc_info=True)

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit or self._eval is None:
            return
        rec, self._eval = self._eval, None
        try:
            rec.log_metrics(_numbers(logs), step=None)
            rec.complete()
        except Exception:
            log.warning("metatrail: evaluate results not recorded", exc_info=True)

    # --------------------------------------------------------------------- internals
    def _model_name(self) -> str:
        return str(getattr(self.model, "name", None) or type(self.model).__name__)

    def _caller_args(self, method: str) -> dict[str, Any]:
        """The arguments of the running ``model.<method>`` call, read from its frame (Keras
        does not hand them to callbacks). Empty if the frame is not found."""
        frame = sys._getframe(1)
        for _ in range(12):
            frame = frame.f_back  # type: ignore[assignment]
            if frame is None:
                return {}
            if frame.f_code.co_name == method and frame.f_locals.get("self") is self.model:
                return dict(frame.f_locals)
        return {}

    def _callback_list(self) -> Any:
        frame = sys._getframe(1)
        for _ in range(6):
            frame = frame.f_back  # type: ignore[assignment]
            if frame is None:
                return None
            candidate = frame.f_locals.get("self")
            if isinstance(candidate, keras.callbacks.CallbackList):
                return candidate
        return None

    def _scope(self) -> RunScope | None:
        run = self.run
        if run is None or isinstance(run, RunScope):
            return run
        scope = getattr(run, "scope", None)
        return scope if isinstance(scope, RunScope) else None

    def _begin_fit(self) -> None:
        if self._rec is not None and not self._rec.done:
            self._rec.fail(FitAborted("the previous fit ended without on_train_end"))
        self._in_fit = True
        _track_open_fit(self)
        self._pending_epochs = []
        self.checkpoints = []
        self._started_at = time.time()
        self._points = []
        self._flushed_at = time.monotonic()
        self._epoch = 0
        self._counter = itertools.count(1)
        args = self._caller_args("fit")
        cb_list = self._callback_list()
        self._checkpointers = [
            c for c in getattr(cb_list, "callbacks", []) if isinstance(c, keras.callbacks.ModelCheckpoint)
        ]
        inputs = self._data_inputs(args, validation=True)
        self._rec = recorder.start_execution(
            "keras.fit", self._model_name(), self._parameters(args),
            [(a, role) for role, a in inputs.items()], scope=self._scope(),
        )
        self._wrap_step_functions()
        if cb_list is not None:
            weakref.finalize(cb_list, self._list_released, self._rec)

    def _parameters(self, args: dict[str, Any]) -> dict[str, Any]:
        model = self.model
        params: dict[str, Any] = {"model_name": self._model_name(), "model_class": type(model).__name__}
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
        if self.params:
            for key in ("epochs", "steps"):
                if isinstance(self.params.get(key), int):
                    params["epochs" if key == "epochs" else "steps_per_epoch"] = self.params[key]
        if args.get("class_weight") is not None:
            params["class_weight"] = {str(k): float(v) for k, v in dict(args["class_weight"]).items()}
        return params

    def _data_inputs(self, args: dict[str, Any], validation: bool) -> dict[str, Artifact]:
        out: dict[str, Artifact] = {}
        for name, value in self.extra_inputs.items():
            art = _as_artifact(value, name, self.max_digest_bytes)
            if art is not None:
                out[name] = art
        x, y = args.get("x"), args.get("y")
        prefix = "train" if validation else "eval"
        for role, data in ((f"{prefix}_x", x), (f"{prefix}_y", y)):
            art = _as_artifact(data, role, self.max_digest_bytes)
            if art is not None:
                out.setdefault(role, art)
        if validation and args.get("validation_data") is not None:
            vd = args["validation_data"]
            parts = vd if isinstance(vd, (tuple, list)) else (vd,)
            for role, value in zip(("validation_x", "validation_y", "validation_weight"), parts):
                art = _as_artifact(value, role, self.max_digest_bytes)
                if art is not None:
                    out.setdefault(role, art)
        return out

    def _wrap_step_functions(self) -> None:
        model = self.model
        for attr in ("train_function", "test_function"):
            fn = getattr(model, attr, None)
            if fn is None or getattr(fn, "_metatrail_wrapped", False):
                continue
            def guarded(*a: Any, __fn: Any = fn, **kw: Any) -> Any:
                try:
                    return __fn(*a, **kw)
                except BaseException as exc:
                    self._failed(exc)
                    raise

            guarded._metatrail_wrapped = True  # type: ignore[attr-defined]
            self._wrapped[attr] = fn
            setattr(model, attr, guarded)

    def _unwrap(self) -> None:
        for attr, fn in self._wrapped.items():
            try:
                if getattr(self.model, attr, None) is not None:
                    setattr(self.model, attr, fn)
            except Exception:
                pass
        self._wrapped = {}

    def _scan_checkpoints(self) -> None:
        """Record checkpoint files written since the last scan (ModelCheckpoint may run
        before or after this callback, so epochs stay pending until the next scan)."""
        if self._rec is None or not self._checkpointers:
            return
        for cp in self._checkpointers:
            for epoch, logs in self._pending_epochs:
                try:
                    path = Path(cp._get_file_path(epoch, None, logs))
                except Exception:
                    path = Path(str(getattr(cp, "filepath", "")))
                self._record_checkpoint(path, epoch, cp)

    def _record_checkpoint(self, path: Path, epoch: int, cp: Any) -> None:
        try:
            st = path.stat()
        except OSError:
            return
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if key in self._seen_files or st.st_mtime < self._started_at - 1:
            return
        self._seen_files.add(key)
        art = Model(
            str(path.resolve()), name=self._model_name(), version=f"epoch-{epoch + 1}",
            properties={"checkpoint": True, "epoch": epoch, "format": path.suffix.lstrip(".") or "dir"},
            custom_properties={"monitor": str(getattr(cp, "monitor", "")), "save_best_only": bool(getattr(cp, "save_best_only", False))},
        )
        assert self._rec is not None
        self._rec.add_output(art, role="checkpoint")
        self.checkpoints.append(art)

    def _end_fit(self, logs: dict[str, Any]) -> None:
        rec = self._rec
        if rec is None or rec.done:
            return
        self._flush_points()
        try:
            self._scan_checkpoints()
        except Exception:
            log.warning("metatrail: checkpoint scan failed", exc_info=True)
        custom: dict[str, Any] = {}
        if self.log_model:
            try:
                self._save_model(rec)
            except Exception as exc:  # an unserializable model must not leave the fit RUNNING
                log.warning("metatrail: the final model could not be saved: %s", exc)
                custom["model_save_error"] = f"{type(exc).__name__}: {exc}"[:1000]
        rec.complete(custom_properties=custom or None)

    def _save_model(self, rec: ExecutionHandle) -> None:
        folder = self.model_dir or DEFAULT_MODEL_DIR
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self._model_name()}-{rec.execution_id}.keras"
        self.model.save(path)
        art = Model(
            str(path.resolve()), name=self._model_name(),
            properties={"framework": "keras", "format": "keras", "epochs_trained": len(self._pending_epochs)},
        )
        rec.add_output(art, role="model")
        self.model_artifact = art


def _size(weight: Any) -> int:
    n = 1
    for d in weight.shape:
        n *= int(d)
    return n


def _track_open_fit(cb: MetadataCallback) -> None:
    global _atexit_registered
    _OPEN_FITS.add(cb)
    with _ATEXIT_LOCK:
        if not _atexit_registered:
            # Registered after the emitter's exit flush, so it runs before it (LIFO).
            atexit.register(_fail_open_fits)
            _atexit_registered = True


def _fail_open_fits() -> None:
    """At exit, a fit still open died with the process: record it FAILED with the error
    that ended the program when there is one (``sys.last_value``)."""
    error = getattr(sys, "last_value", None)
    for cb in list(_OPEN_FITS):
        cb._failed(error if isinstance(error, BaseException) else FitAborted("the process exited during fit"))


class FitAborted(RuntimeError):
    """Recorded as the error of a fit that ended without ``on_train_end`` and without an
    exception in a training or validation step (a data generator or callback raised)."""


def _record_failure(rec: ExecutionHandle | None, exc: BaseException) -> None:
    if rec is None or rec.done:
        return
    try:
        rec.fail(exc)
    except Exception:
        log.warning("metatrail: could not record the failed fit", exc_info=True)


def _numbers(logs: Mapping[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """The numeric entries of Keras logs (tensors and numpy scalars become floats)."""
    out: dict[str, float] = {}
    for key, value in (logs or {}).items():
        try:
            out[prefix + str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def _as_artifact(value: Any, role: str, max_digest_bytes: int) -> Artifact | None:
    """Data passed to fit as an artifact: Artifacts as they are, paths as files, objects
    with a name as named datasets, arrays by content digest. Anything else: ``None``."""
    if value is None:
        return None
    if isinstance(value, Artifact):
        return value
    attached = getattr(value, "metatrail_artifact", None)
    if isinstance(attached, Artifact):
        return attached
    if isinstance(value, (str, os.PathLike)):
        return Dataset(os.fspath(value), name=role)
    array = _as_numpy(value)
    if array is not None:
        props = {"shape": list(array.shape), "dtype": str(array.dtype), "nbytes": int(array.nbytes)}
        if array.nbytes <= max_digest_bytes:
            digest = "sha256:" + hashlib.sha256(memoryview(array).cast("B")).hexdigest()
            return Dataset(f"memory://ndarray/{digest[7:23]}", digest=digest, name=role, properties=props)
        props["digest_skipped"] = f"{array.nbytes} bytes > {max_digest_bytes}"
        return Dataset(f"memory://ndarray/{role}", name=role, properties=props, compute_digest=False)
    name = getattr(value, "name", None)
    if isinstance(name, str) and name:
        return Dataset(f"dataset://{name}", name=name, compute_digest=False)
    return None


def _as_numpy(value: Any) -> Any:
    """A contiguous numpy array of numpy arrays and of pandas objects (``to_numpy``)."""
    np = sys.modules.get("numpy")
    if np is None:
        return None
    if not isinstance(value, np.ndarray):
        to_numpy = getattr(value, "to_numpy", None)
        if to_numpy is None or not hasattr(value, "shape"):
            return None
        value = to_numpy()
        if not isinstance(value, np.ndarray) or value.dtype == object:
            return None
    return np.ascontiguousarray(value)
