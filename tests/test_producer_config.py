"""A bad ``METATRAIL_*`` value in a training script: one warning per process naming the
variable and the value (nothing recorded, the program runs on), or with
``METATRAIL_STRICT=1`` — read on its own, so the bad variable cannot hide it — the
``ConfigError`` raised by the first recording call. Real interpreters, as a user runs them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TRAIN = """
import metatrail
from metatrail import Dataset, Model, log_metric, run, track

@track
def train(data: Dataset, epochs: int = 3) -> Model:
    for epoch in range(epochs):
        log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    return Model("s3://bucket/model")

for attempt in range(2):
    try:
        with run("nightly", pipeline="ctr"):
            for _ in range(3):
                train(Dataset("s3://bucket/train.csv"))
    except metatrail.ConfigError as exc:
        print(f"raised ConfigError: {exc}")
print("training done")
"""

BAD = [
    ("METATRAIL_TRANSPORT", "kafak", "Input should be 'embedded', 'kafka', 'file' or 'http'"),
    ("METATRAIL_RELAY_BATCH_SIZE", "0", "greater than 0"),
]


def _train(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("variable", "value", "what"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_value_is_one_warning_naming_the_variable_and_value(
    tmp_path: Path, variable: str, value: str, what: str
) -> None:
    done = _train(tmp_path, {variable: value})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["training done"]
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # not one per call: 2 runs x 3 calls x 4 records
    assert lines[0].startswith(f"metatrail: {variable}: ")
    assert what in lines[0] and f"got {value!r}" in lines[0]
    assert "nothing is recorded in this process" in lines[0]
    assert not (tmp_path / ".metatrail").exists()


@pytest.mark.parametrize(("variable", "value", "what"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("strict", ["1", "true"])
def test_strict_from_the_environment_raises_at_the_first_recording_call(
    tmp_path: Path, variable: str, value: str, what: str, strict: str
) -> None:
    done = _train(tmp_path, {variable: value, "METATRAIL_STRICT": strict})
    assert done.returncode == 0, done.stderr
    expected = f"raised ConfigError: {variable}: "
    out = done.stdout.splitlines()
    assert [line.startswith(expected) for line in out] == [True, True, False], out
    assert what in out[0] and f"got {value!r}" in out[0]
    assert out[-1] == "training done"
    assert done.stderr == ""


def test_a_bad_strict_value_is_the_one_warning(tmp_path: Path) -> None:
    done = _train(tmp_path, {"METATRAIL_STRICT": "perhaps"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["training done"]
    (line,) = done.stderr.splitlines()
    assert line.startswith("metatrail: METATRAIL_STRICT: ") and "got 'perhaps'" in line


def test_good_settings_record_and_say_nothing(tmp_path: Path) -> None:
    """The other side of the warning: a valid environment records silently."""
    done = _train(tmp_path, {"METATRAIL_TRANSPORT": "file", "METATRAIL_STRICT": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["training done"] and done.stderr == ""
    events = (tmp_path / ".metatrail" / "events.jsonl").read_text().splitlines()
    assert sum('"kind":"execution.completed"' in e for e in events) == 6
