"""``MetadataCallback``: the Keras callback that turns a fit and later evaluate() calls
into executions (what it records: see ``metatrail.producer.keras``).

The hooks hold the order of a fit and catch their own errors; turning data into artifacts,
logs into metrics, the model into parameters and failures into records is done by the
sibling modules.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras

from metatrail.producer import recorder
from metatrail.producer.artifacts import Artifact, Model
from metatrail.producer.context import RunScope
from metatrail.producer.keras.failures import (
    FitAborted,
    forget_open_fit,
    record_failure,
    track_open_fit,
    unwrap_step_functions,
    wrap_step_functions,
)
from metatrail.producer.keras.metrics import BatchMetrics, numbers
from metatrail.producer.keras.params import fit_parameters
from metatrail.producer.keras.values import DEFAULT_MAX_DIGEST_BYTES, as_artifact
from metatrail.producer.recorder import ExecutionHandle

log = logging.getLogger("metatrail.producer.keras")

#: Where final models go when no ``model_dir`` is given.
DEFAULT_MODEL_DIR = Path(".metatrail/models")


class MetadataCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Records the ``fit`` it is given to (see the ``metatrail.producer.keras`` doc). One instance per fit is
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
        self._predict: ExecutionHandle | None = None
        self._in_fit = False
        self._checkpointers: list[Any] = []
        self._pending_epochs: list[tuple[int, dict[str, Any]]] = []
        self._seen_files: set[tuple[str, int, int]] = set()
        self._batches = BatchMetrics()
        self._epoch = 0
        self._counter = itertools.count(1)
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
            points = recorder.metric_points(numbers(logs, "batch/"), step)
            if self._batches.add(points):
                self._flush_points()
        except Exception:
            log.warning("metatrail: batch metrics not recorded", exc_info=True)

    def _flush_points(self) -> None:
        """Spool the buffered batch metrics as one ``MetricsLogged`` event."""
        self._batches.flush(self._rec)

    def _list_released(self, rec: ExecutionHandle) -> None:
        """The fit's CallbackList is gone: if that fit never ended, it failed."""
        if rec.done:
            return
        error = FitAborted("fit raised before on_train_end, outside a training step")
        if rec is self._rec:
            self.record_fit_failure(error)
        else:
            record_failure(rec, error)

    def record_fit_failure(self, exc: BaseException) -> None:
        """Record the running fit FAILED with ``exc`` (after its buffered metrics). Never
        raises; the failure detectors (``metatrail.producer.keras.failures``) call it."""
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
            forget_open_fit(self)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if self._rec is None:
            return
        try:
            self._flush_points()
            self._rec.log_metrics(numbers(logs), step=epoch)
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
            forget_open_fit(self)

    # -------------------------------------------------- evaluate / predict lifecycle
    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit:
            return  # validation inside fit: reported as val_* in the epoch logs
        self._eval = self._start_use("evaluate")

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._in_fit or self._eval is None:
            return
        rec, self._eval = self._eval, None
        try:
            rec.log_metrics(numbers(logs), step=None)
            rec.complete()
        except Exception:
            log.warning("metatrail: evaluate results not recorded", exc_info=True)

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        if not self._in_fit:
            self._predict = self._start_use("predict")

    def on_predict_end(self, logs: dict[str, Any] | None = None) -> None:
        rec, self._predict = self._predict, None
        if rec is not None:
            rec.complete()

    @property
    def fitting(self) -> bool:
        """Whether the fit this callback records is running."""
        return self._in_fit

    def _start_use(self, method: str) -> ExecutionHandle | None:
        """Start a ``keras.<method>`` execution (evaluate, predict) whose INPUTs are the
        model the last fit saved and the data given; None if it could not start."""
        try:
            inputs = {"model": self.model_artifact} if self.model_artifact is not None else {}
            args = self._caller_args(method)
            inputs.update(self._data_inputs(args, "eval" if method == "evaluate" else method))
            params = {"model_name": self._model_name()}
            params.update({k: args[k] for k in ("batch_size", "steps") if isinstance(args.get(k), int)})
            return recorder.start_execution(
                f"keras.{method}", self._model_name(), params,
                [(a, role) for role, a in inputs.items()], scope=self._scope(),
            )
        except Exception:
            log.warning("metatrail: could not start recording %s", method, exc_info=True)
            return None

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
        track_open_fit(self)
        self._pending_epochs = []
        self.checkpoints = []
        self._started_at = time.time()
        self._batches.reset()
        self._epoch = 0
        self._counter = itertools.count(1)
        args = self._caller_args("fit")
        cb_list = self._callback_list()
        self._checkpointers = [
            c for c in getattr(cb_list, "callbacks", []) if isinstance(c, keras.callbacks.ModelCheckpoint)
        ]
        inputs = self._data_inputs(args, "train")
        self._rec = recorder.start_execution(
            "keras.fit", self._model_name(),
            fit_parameters(self.model, self._model_name(), args, self.params),
            [(a, role) for role, a in inputs.items()], scope=self._scope(),
        )
        self._wrap_step_functions()
        if cb_list is not None:
            weakref.finalize(cb_list, self._list_released, self._rec)

    def _data_inputs(self, args: dict[str, Any], prefix: str) -> dict[str, Artifact]:
        """The call's data (``x``, ``y``; for a fit also ``validation_data``) and the extra
        inputs as artifacts, by role (``<prefix>_x``...)."""
        out: dict[str, Artifact] = {}
        for name, value in self.extra_inputs.items():
            art = as_artifact(value, name, self.max_digest_bytes)
            if art is not None:
                out[name] = art
        x, y = args.get("x"), args.get("y")
        for role, data in ((f"{prefix}_x", x), (f"{prefix}_y", y)):
            art = as_artifact(data, role, self.max_digest_bytes)
            if art is not None:
                out.setdefault(role, art)
        if prefix == "train" and args.get("validation_data") is not None:
            vd = args["validation_data"]
            parts = vd if isinstance(vd, (tuple, list)) else (vd,)
            for role, value in zip(("validation_x", "validation_y", "validation_weight"), parts):
                art = as_artifact(value, role, self.max_digest_bytes)
                if art is not None:
                    out.setdefault(role, art)
        return out

    def _wrap_step_functions(self) -> None:
        self._wrapped.update(wrap_step_functions(self.model, self.record_fit_failure))

    def _unwrap(self) -> None:
        unwrap_step_functions(self.model, self._wrapped)
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
