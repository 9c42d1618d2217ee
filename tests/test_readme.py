"""The README stays true: its commands exist, its settings table is complete, and the
test command it gives is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from metatrail.schemas.settings import known_env_vars

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    missing = sorted(v for v in known_env_vars() if f"`{v}`" not in README)
    assert not missing, f"README lacks: {missing}"


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash .ci/run" in README
    assert ci.rstrip().splitlines()[-1].strip() == "python -m pytest"
    assert "`python -m pytest`" in README


def test_every_cli_command_in_the_readme_exists() -> None:
    from metatrail.consumer.cli import main

    commands = set(re.findall(r"`metatrail ([a-z]+)", README))
    assert {"demo", "consume", "worker", "ingest", "lineage"} <= commands
    for command in sorted(commands):
        assert main([command, "--help"]) == 0, command
