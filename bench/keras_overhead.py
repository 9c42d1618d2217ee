"""Added time of ``metatrail.producer.keras.MetadataCallback`` per epoch and per batch.

The same Keras 3 fit (PyTorch CPU backend, a dense model sized so an epoch takes about a
second here) runs without the callback, with it (epoch metrics, inputs by digest, final
model saved and recorded), and with batch logging on every batch, interleaved round by
round so machine noise hits all three alike. Every fit carries the same epoch timer.
Reported: median and fastest epoch time of each, the added time per epoch (and as a
share of the epoch) and per batch, and — because on a shared 2-core machine the same fit's
epochs vary by tens of percent from run to run, far more than 1 % — the time measured
inside the callback's own hooks, which is the work it adds. The epoch hooks run on the
training thread; the batch hook is declared ``async_safe``, so on backends that allow it
(PyTorch, JAX) Keras runs it in its callback thread pool and the training thread only pays
the hand-off. Events go to the embedded store in a temporary folder (the
relay applies them in a background thread, as in real use). Writes
bench/results/keras.json.

    python bench/keras_overhead.py [--rounds 5] [--epochs 3] [--rows 9600] [--batch 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from metatrail.producer import emitter  # noqa: E402
from metatrail.keras import MetadataCallback  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "keras.json"
HOOKS = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_train_end", "on_train_batch_end")


class EpochTimer(keras.callbacks.Callback):  # type: ignore[misc]
    """Wall time of each epoch (present in every variant)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self._t0 = 0.0

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        self.seconds.append(time.perf_counter() - self._t0)


class TimedCallback(MetadataCallback):
    """MetadataCallback whose hooks (and the step-function wrapper it installs) are timed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hook_s: dict[str, float] = dict.fromkeys(HOOKS, 0.0)
        for name in HOOKS:
            fn = getattr(self, name)
            if name == "on_train_batch_end" and self.log_every_n_batches is None:
                continue  # not installed: Keras skips it

            def timed(*a: Any, __fn: Any = fn, __name: str = name, **k: Any) -> Any:
                t0 = time.perf_counter()
                try:
                    return __fn(*a, **k)
                finally:
                    self.hook_s[__name] += time.perf_counter() - t0

            setattr(self, name, timed)


def build_model(width: int, features: int) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((features,)),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="bench_model",
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    return model


def fit_once(
    model: Any, x: Any, y: Any, args: argparse.Namespace, cb: TimedCallback | None
) -> tuple[list[float], dict[str, float]]:
    timer = EpochTimer()
    callbacks = [timer] + ([cb] if cb is not None else [])
    model.fit(x, y, batch_size=args.batch, epochs=args.epochs, verbose=0, shuffle=False, callbacks=callbacks)
    return timer.seconds, (cb.hook_s if cb is not None else dict.fromkeys(HOOKS, 0.0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=9_600)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch intra-op threads (1: on a shared machine OpenMP spinning swamps the timings)",
    )
    parser.add_argument(
        "--transport", choices=("embedded", "file"), default="embedded",
        help="embedded: events applied to a SQLite store by a thread of this process (the default "
        "setup); file: appended to a JSONL file (the relay does almost nothing)",
    )
    parser.add_argument("--no-write", action="store_true", help="Do not write the results file.")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="metatrail-keras-bench-"))
    emitter.configure(
        transport=args.transport, store_url=f"sqlite:///{scratch}/metadata.db", spool_path=scratch / "spool.db",
        file_path=scratch / "events.jsonl",
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, 32)).astype("float32")
    y = (x[:, 0] + x[:, 1] > 0).astype("float32")
    batches = -(-args.rows // args.batch)
    model = build_model(args.width, x.shape[1])
    model.fit(x, y, batch_size=args.batch, epochs=1, verbose=0)  # warm-up (compiles, allocates)

    variants = {
        "without": lambda: None,
        "callback": lambda: TimedCallback(model_dir=scratch / "models"),
        "callback_batch_logging": lambda: TimedCallback(model_dir=scratch / "models", log_every_n_batches=1),
    }
    epochs: dict[str, list[float]] = {k: [] for k in variants}
    hooks: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % 3:] + names[: r % 3]:  # rotate the order: no variant always goes first
            make = variants[name]
            seconds, hook_s = fit_once(model, x, y, args, make())
            epochs[name].extend(seconds)
            hooks[name].append(hook_s)
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {statistics.median(v):.3f} s" for k, v in epochs.items()))
    delivered = emitter.flush(60)

    med = {k: statistics.median(v) for k, v in epochs.items()}
    base = med["without"]
    cbs = ("callback", "callback_batch_logging")

    def per_fit(name: str, *hook_names: str) -> float:
        """Median over fits of the seconds spent in these hooks during one fit."""
        return statistics.median(sum(h[n] for n in hook_names) for h in hooks[name])

    recurring = {k: per_fit(k, "on_epoch_begin", "on_epoch_end") / args.epochs for k in cbs}
    once = {k: per_fit(k, "on_train_begin", "on_train_end") for k in cbs}
    batch_hook = per_fit("callback_batch_logging", "on_train_batch_end") / (args.epochs * batches)
    result: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()},
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "setup": {
            "rows": args.rows, "batch_size": args.batch, "batches_per_epoch": batches, "epochs_per_fit": args.epochs,
            "rounds": args.rounds, "width": args.width, "params": int(model.count_params()),
            "torch_threads": args.threads, "transport": args.transport,
        },
        "median_epoch_s": {k: round(v, 4) for k, v in med.items()},
        # the fastest epoch of each: least touched by other processes on a shared machine
        "min_epoch_s": {k: round(min(v), 4) for k, v in epochs.items()},
        "added_per_epoch_pct_from_min_epochs": {
            k: round((min(epochs[k]) - min(epochs["without"])) / min(epochs["without"]) * 100, 3) for k in cbs
        },
        "added_per_epoch_ms_from_epoch_medians": {k: round((med[k] - base) * 1000, 2) for k in cbs},
        "added_per_epoch_pct_from_epoch_medians": {k: round((med[k] - base) / base * 100, 3) for k in cbs},
        "added_per_batch_us_from_epoch_medians": round((med["callback_batch_logging"] - base) / batches * 1e6, 1),
        "hook_ms_per_epoch": {k: round(recurring[k] * 1000, 3) for k in cbs},
        "hook_pct_of_epoch": {k: round(recurring[k] / base * 100, 4) for k in cbs},
        "hook_ms_once_per_fit_incl_model_save": {k: round(once[k] * 1000, 2) for k in cbs},
        "hook_us_per_batch_batch_logging_every_batch": round(batch_hook * 1e6, 2),
        "events_delivered": delivered,
        "targets": {"hook_pct_of_epoch": "< 1", "hook_us_per_batch_batch_logging_every_batch": "< 100"},
    }
    print()
    print(f"median epoch (s), {batches} batches/epoch: without {med['without']:.4f} | with callback "
          f"{med['callback']:.4f} | with callback + batch logging every batch {med['callback_batch_logging']:.4f}")
    print("fastest epoch (s): " + " | ".join(f"{k} {min(v):.4f}" for k, v in epochs.items()))
    for k in cbs:
        print(f"{k:>24}: epoch median {result['added_per_epoch_ms_from_epoch_medians'][k]:+.1f} ms "
              f"({result['added_per_epoch_pct_from_epoch_medians'][k]:+.2f} %) vs without; inside the hooks "
              f"{result['hook_ms_per_epoch'][k]:.3f} ms/epoch ({result['hook_pct_of_epoch'][k]:.3f} % of an epoch) "
              f"+ {result['hook_ms_once_per_fit_incl_model_save'][k]:.1f} ms once per fit (start, model save)")
    print(f"batch logging every batch: {result['hook_us_per_batch_batch_logging_every_batch']:.2f} µs per batch "
          "inside the hook (Keras runs it in its callback thread pool, off the training thread); "
          f"{result['added_per_batch_us_from_epoch_medians']:+.1f} µs per batch from epoch medians")
    if not args.no_write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
