"""Test-wide fixtures; the real-service fixtures live in tests/fixtures/."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.fixtures.backends", "tests.fixtures.broker", "tests.fixtures.server", "tests.fixtures.browser",
                  "tests.fixtures.demo"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    """No test reads the developer's METATRAIL_* settings or writes into the checkout."""
    for name in list(os.environ):
        if name.startswith("METATRAIL_") and not name.startswith("METATRAIL_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
