"""``metatrail worker MODULE`` in embedded mode."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from metatrail.consumer.cli import main
from metatrail.consumer.worker.lookup import dispose_shared_engines
from metatrail import Dataset, run, track
from metatrail.producer import emitter

STEPS = textwrap.dedent(
    """
    from pathlib import Path

    from metatrail import Model
    from metatrail.producer.steps import step


    @step(inputs={"data": "Dataset"}, outputs=["Model"], pipeline="cli")
    def fit(data):
        Path("fit-ran.txt").write_text(data.uri)
        return Model("mem://models/cli")
    """
)


def test_worker_command_registers_and_runs_the_module_steps(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "orch_cli_steps.py").write_text(STEPS)
    monkeypatch.setenv("METATRAIL_STORE_URL", sqlite_url)
    monkeypatch.setenv("METATRAIL_SPOOL_PATH", str(tmp_path / "spool.db"))
    monkeypatch.setenv("METATRAIL_STRICT", "true")
    try:
        assert main(["worker", "orch_cli_steps", "--idle-timeout-s", "30"]) == 0  # registers
        assert "fit" in capsys.readouterr().err

        @track(name="ingest")
        def ingest() -> Dataset:
            return Dataset("mem://data/cli")

        with run("r", pipeline="cli"):
            ingest()
        assert main(["worker", "orch_cli_steps", "--idle-timeout-s", "30"]) == 0
        assert (tmp_path / "fit-ran.txt").read_text() == "mem://data/cli"
        assert "1 ran" in capsys.readouterr().err
    finally:
        emitter.shutdown(10)
        dispose_shared_engines()


def test_worker_command_rejects_a_module_without_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "orch_no_steps.py").write_text("x = 1\n")
    try:
        assert main(["worker", "orch_no_steps"]) == 1
        assert "declares no @step functions" in capsys.readouterr().err
        assert main(["worker", "orch_missing_module"]) == 1
        assert "cannot import module" in capsys.readouterr().err
    finally:
        emitter.shutdown(10)
