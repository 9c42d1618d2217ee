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


def _readme_command_lines() -> list[str]:
    """Every ``metatrail ...`` command the README shows: in shell blocks and inline."""
    lines = re.findall(r"`(metatrail [^`]+)`", README)
    for block in re.findall(r"^```bash\n(.*?)^```", README, flags=re.M | re.S):
        lines += [line.strip() for line in block.splitlines() if line.strip().startswith("metatrail ")]
    return lines


def test_every_cli_command_line_in_the_readme_parses() -> None:
    """Each command the README shows names a real (sub)command, and every option it uses
    is one that command takes (alternatives written ``--up\\|--down`` each checked)."""
    import typer

    from metatrail.consumer.cli import app

    root = typer.main.get_command(app)
    lines = _readme_command_lines()
    assert any(line.startswith("metatrail db upgrade") for line in lines)
    for line in lines:
        words = line.replace("\\|", " ").replace("[", " ").replace("]", " ").split("#")[0].split()[1:]
        command, path = root, ["metatrail"]
        while hasattr(command, "commands") and words and words[0] in command.commands:
            command = command.commands[words[0]]
            path.append(words.pop(0))
        assert not hasattr(command, "commands"), f"{line!r}: {' '.join(path)} needs a subcommand"
        options = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        for word in words:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"{line!r}: {' '.join(path)} has no {word}"
