"""The README's Python examples run as copied.

Every ``python`` block of the Quick start, Keras and Pipelines sections runs in a fresh
interpreter of this test environment, in an empty directory holding only what a reader of
that section has: the input file ``data/train.csv``, and for Keras a compiled ``model`` with
its ``x`` and ``y`` (the small setup below is prepended; the README block itself is run
unchanged). Nothing is configured: the examples record into the embedded store, which the
test then reads, and the shell commands that follow the Quick start run on it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from metatrail import Store
from metatrail.consumer.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
STORE = "sqlite:///.metatrail/metadata.db"

#: What a reader of the Keras section already has: a compiled model and its data.
KERAS_SETUP = """\
import keras
import numpy as np

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")], name="readme")
model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
"""


def section(title: str) -> str:
    """The text of the ``## title`` section."""
    parts = re.split(r"^## ", README, flags=re.M)
    found = [p for p in parts if p.startswith(title + "\n")]
    assert len(found) == 1, f"no single section {title!r} in README.md"
    return found[0]


def blocks(title: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section(title), flags=re.M | re.S)


def run_python(code: str, cwd: Path) -> str:
    """Run ``code`` as a script in a fresh interpreter; its stdout (fails with its stderr)."""
    script = cwd / "example.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], cwd=cwd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"README example failed:\n{code}\n--- stderr:\n{done.stderr[-4000:]}"
    script.unlink()
    return done.stdout


@pytest.fixture
def reader_dir(tmp_path: Path) -> Path:
    """The empty directory a reader works in, with the input file the examples read."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("shoe,clicked\nboots,1\nsandals,0\n")
    return tmp_path


def test_quick_start_runs_as_copied(reader_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (code,) = blocks("Quick start", "python")
    run_python(code, reader_dir)
    with Store.open(STORE) as store:
        executions = store.executions("context.name = 'nightly-2026-11-22'", order_by="created_at").items
        assert [(x.type, x.state) for x in executions] == [("Trainer", "COMPLETE"), ("evaluate", "COMPLETE")]
        (model,) = store.artifacts("type = 'Model'").items
        assert model.name == "ctr" and model.properties == {"framework": "numpy"} and model.digest
        (run,) = store.contexts("type = 'Run'").items
        assert run.status == "COMPLETE" and run.started_at and run.ended_at  # type: ignore[attr-defined]
        short = store.short_ids([model.id, run.id, *run.parent_ids])  # type: ignore[attr-defined]
        other = run.parent_ids[0]  # type: ignore[attr-defined]
    # The shell commands that follow, with the placeholders filled as a reader would.
    (shell,) = blocks("Quick start", "bash")
    fill = {"<model-id>": short[model.id], "<run-id>": short[run.id], "<other-run-id>": short[other]}
    for line in shell.strip().splitlines():
        argv = re.findall(r"\"[^\"]*\"|\S+", line)[1:]
        argv = [fill.get(a, a.strip('"')) for a in argv]
        assert main(argv) == 0, line
        out = capsys.readouterr().out
        assert "ctr" in out or "Trainer" in out, out


def test_quick_start_again_is_a_cache_hit(reader_dir: Path) -> None:
    """Run twice, as a reader trying it again would: the training call is CACHED."""
    (code,) = blocks("Quick start", "python")
    run_python(code, reader_dir)
    run_python(code, reader_dir)
    with Store.open(STORE) as store:
        states = [x.state for x in store.executions("type = 'Trainer'", order_by="created_at").items]
    assert states == ["COMPLETE", "CACHED"]


def test_keras_runs_as_copied(reader_dir: Path) -> None:
    pytest.importorskip("keras")
    code, _autolog = blocks("Keras", "python")
    run_python(KERAS_SETUP + "\n# --- the README block, unchanged:\n" + code, reader_dir)
    with Store.open(STORE) as store:
        (fit,) = store.executions().items
        assert fit.state == "COMPLETE" and fit.name == "readme"
        metrics = store.metrics(fit.id)
        assert {m.step for m in metrics if m.key == "loss"} == set(range(10))
        assert {"val_loss", "accuracy"} <= {m.key for m in metrics}
        (saved,) = store.artifacts("type = 'Model'").items
        assert saved.digest and Path(saved.uri or "").exists()  # log_model=True


def test_keras_autolog_runs_as_copied(reader_dir: Path) -> None:
    pytest.importorskip("keras")
    _callback, code = blocks("Keras", "python")
    run_python(KERAS_SETUP + "\n# --- the README block, unchanged:\n" + code, reader_dir)
    with Store.open(STORE) as store:
        fit, evaluate = store.executions(order_by="created_at").items
        assert (fit.state, evaluate.state) == ("COMPLETE", "COMPLETE")
        assert evaluate.type != fit.type and {m.key for m in store.metrics(evaluate.id)} >= {"loss"}
        model_ids = {a.id for a in store.artifacts("type = 'Model'").items}
        upstream = store.lineage(evaluate.id, "upstream", max_hops=1)
        assert model_ids & {n.id for n in upstream.nodes}, "evaluate() has the fitted model as INPUT"


def test_pipelines_run_as_copied(reader_dir: Path) -> None:
    (code,) = blocks("Pipelines: triggers, caching, warm start", "python")
    out = run_python(code, reader_dir)
    assert "the graph ran 1 step(s)" in out
    with Store.open(STORE) as store:
        runs = store.executions("type = 'trainer'", order_by="created_at").items
        assert [x.state for x in runs] == ["COMPLETE", "COMPLETE"]
        assert runs[0].trigger_id is not None and runs[1].trigger_id is None  # the graph's, then the direct call
        warm = store.lineage(runs[1].id, "upstream", max_hops=1)
        first_model = store.lineage(runs[0].id, "downstream", max_hops=1).nodes[-1]
        roles = {(e.source, e.role) for e in warm.edges}
        assert (first_model.id, "base_model") in roles  # the warm start is an INPUT edge
