"""Keras 3: record a ``fit`` (and later ``evaluate`` / ``predict`` calls) as executions.

Install with ``pip install metatrail[keras]``; ``import metatrail`` never imports Keras.
Either turn on ``autolog()`` once, which gives every ``fit`` a callback and records the
``evaluate`` and ``predict`` calls of the models fitted under it (``autolog(disable=True)``
turns it off), or pass the callback yourself::

    from metatrail import run
    from metatrail.keras import MetadataCallback, autolog

    autolog()
    with run("nightly", pipeline="ctr"):
        model.fit(x, y, validation_data=(vx, vy), epochs=5, callbacks=[checkpoint])
        model.evaluate(tx, ty)

    with run("nightly", pipeline="ctr"):               # the same, by hand
        cb = MetadataCallback(log_every_n_batches=50)
        model.fit(x, y, validation_data=(vx, vy), epochs=5, callbacks=[cb, checkpoint])
        model.evaluate(tx, ty, callbacks=[cb])

A callback passed explicitly while autolog is on is the one used (never two).

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
execution whose INPUTs are that model and the data, and whose metrics are the results;
a ``predict()`` as a ``keras.predict`` execution with the same INPUTs.

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

The modules behind it, in ``metatrail.producer.keras``: ``autolog`` (the patched ``fit`` /
``evaluate`` / ``predict``), ``callback`` (the hooks, in the order of a fit), ``values`` (data as artifacts),
``metrics`` (logs as metric values; the batch buffer), ``params`` (a model and its fit
call as parameters), ``failures`` (noticing fits that fail).
"""

from __future__ import annotations

from metatrail.producer.keras.autolog import autolog
from metatrail.producer.keras.callback import DEFAULT_MODEL_DIR, MetadataCallback
from metatrail.producer.keras.failures import FitAborted
from metatrail.producer.keras.metrics import BATCH_FLUSH_S, MAX_BUFFERED_POINTS
from metatrail.producer.keras.values import DEFAULT_MAX_DIGEST_BYTES

__all__ = [
    "BATCH_FLUSH_S",
    "DEFAULT_MAX_DIGEST_BYTES",
    "DEFAULT_MODEL_DIR",
    "FitAborted",
    "MAX_BUFFERED_POINTS",
    "MetadataCallback",
    "autolog",
]
