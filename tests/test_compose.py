"""docker-compose.yml stays coherent with the code (no Docker engine runs here): every
``metatrail ...`` command it runs exists in the CLI, every METATRAIL_ variable it sets is a
setting with a valid value, the services a deployment needs are there with healthchecks."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from metatrail.consumer.cli import main
from metatrail.consumer.service.topics import TOPIC_MAX_MESSAGE_BYTES
from metatrail.schemas.settings import known_env_vars, load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _metatrail_commands() -> list[tuple[str, list[str]]]:
    found = []
    for name, service in SERVICES.items():
        command = service.get("command")
        if isinstance(command, str):
            command = command.split()
        if command and command[0] == "metatrail":
            found.append((name, [str(part) for part in command]))
        test = (service.get("healthcheck") or {}).get("test") or []
        if len(test) > 1 and test[0] == "CMD" and test[1] == "metatrail":
            found.append((f"{name} healthcheck", [str(part) for part in test[1:]]))
    return found


def test_the_deployment_has_its_services() -> None:
    assert SERVICES["kafka"]["image"].startswith("apache/kafka:")
    assert SERVICES["postgres"]["image"].startswith("postgres:")
    commands = {name: cmd for name, cmd in _metatrail_commands()}
    assert commands["migrate"] == ["metatrail", "db", "upgrade"]
    assert commands["consumer"] == ["metatrail", "consume"]
    assert commands["worker"][:2] == ["metatrail", "worker"]
    assert commands["metatrail-server"][:2] == ["metatrail", "serve"]
    assert SERVICES["migrate"]["restart"] == "no"
    consumer_deps = SERVICES["consumer"]["depends_on"]
    assert consumer_deps["migrate"]["condition"] == "service_completed_successfully"
    assert consumer_deps["kafka"]["condition"] == "service_healthy"
    for name in ("kafka", "postgres", "consumer", "metatrail-server"):
        assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


def test_kafka_is_a_single_kraft_node_that_carries_oversized_events() -> None:
    env = SERVICES["kafka"]["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "ZOOKEEPER" not in " ".join(env).upper()
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= TOPIC_MAX_MESSAGE_BYTES
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1


@pytest.mark.parametrize("where,command", _metatrail_commands(), ids=lambda v: v if isinstance(v, str) else "-".join(v[1:3]))
def test_every_metatrail_command_exists(where: str, command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command[1:], "--help"]) == 0, f"{where}: `{' '.join(command)}` is not a CLI command"
    assert "Usage:" in capsys.readouterr().out
    if command[1] == "worker":
        module = command[2]
        assert importlib.util.find_spec(module) is not None, f"{where}: no module {module}"


def test_every_variable_is_a_known_setting_with_a_valid_value(monkeypatch: pytest.MonkeyPatch) -> None:
    known = known_env_vars()
    for name, service in SERVICES.items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment must be a mapping"
        metatrail = {k: str(v) for k, v in env.items() if k.startswith("METATRAIL_")}
        unknown = sorted(set(metatrail) - known)
        assert not unknown, f"{name} sets unknown variables {unknown}"
        if not metatrail:
            continue
        with monkeypatch.context() as m:
            for key, value in metatrail.items():
                m.setenv(key, value)
            settings = load_settings()  # raises ConfigError naming a bad value
        assert settings.transport == "kafka" and settings.kafka_bootstrap


def test_the_image_is_built_from_the_dockerfile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for name in ("migrate", "consumer", "worker", "metatrail-server"):
        build = SERVICES[name]["build"]
        assert build["context"] == "." and build["dockerfile"] == "Dockerfile"
    assert "pip install" in dockerfile and "service" in dockerfile and "postgres" in dockerfile
    assert "server" in dockerfile


def test_the_server_is_exposed_coherently_with_serve(capsys: pytest.CaptureFixture[str]) -> None:
    """The server's command parses with the CLI's own options, its port is the one
    published and probed, its host is not loopback (so a token is required: the exposure
    rule of serve), and it drains on SIGTERM within its grace period."""
    service = SERVICES["metatrail-server"]
    command = [str(p) for p in service["command"]]
    options = dict(zip(command[2::2], command[3::2]))
    assert set(options) <= {"--host", "--port", "--store"}
    port = options.get("--port", "8181")
    assert any(str(p).split(":")[-1] == port for p in service["ports"])
    assert f"127.0.0.1:{port}/api/v1/readyz" in " ".join(service["healthcheck"]["test"])
    assert options["--host"] == "0.0.0.0" and "--insecure" not in command
    assert service["stop_signal"] == "SIGTERM"
    timeout = float(service["environment"].get("METATRAIL_SERVER_SHUTDOWN_TIMEOUT_S", 30))
    grace = float(str(service["stop_grace_period"]).rstrip("s"))
    assert grace > timeout
    assert main(["serve", "--help"]) == 0
    help_text = capsys.readouterr().out
    for option in ("--host", "--port", "--store", "--insecure"):
        assert option in help_text
