"""Ids come from a private source (design rule 1): never the user's ``random`` or numpy state.

* Data-parallel workers that all call ``random.seed(42)`` and start at the same moment
  must not draw the same ids (they would silently merge different executions).
* Recording must not move the user's random streams: a seeded program gives the same
  numbers with and without tracking.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from tenacity import RetryCallState

import metatrail
from metatrail.producer import emitter, relay

WORKERS = 8
CALLS = 500


def _worker(index: int, folder: str, barrier: Any, start_method: str) -> None:
    """One data-parallel worker: seeds like its siblings, waits for all, then records."""
    random.seed(42)
    if start_method == "fork":
        emitter.shutdown(0)  # the parent's emitter (if any) is not this worker's
    metatrail.configure(
        transport="file",
        file_path=Path(folder, f"events-{index}.jsonl"),
        spool_path=Path(folder, f"spool-{index}.db"),
    )

    @metatrail.track
    def train(data: metatrail.Dataset, lr: float) -> metatrail.Model:
        return metatrail.Model(f"s3://bucket/models/{index}")

    barrier.wait(timeout=120)
    with metatrail.run(f"worker-{index}", pipeline="seeded"):
        for i in range(CALLS):
            train(metatrail.Dataset("s3://bucket/data/train.csv"), lr=0.1)
    if not metatrail.flush(120):
        raise SystemExit(3)
    emitter.shutdown(10)


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_seeded_workers_started_together_never_share_an_id(
    tmp_path: Path, start_method: str
) -> None:
    ctx = multiprocessing.get_context(start_method)
    barrier = ctx.Barrier(WORKERS)
    workers = [
        ctx.Process(target=_worker, args=(i, str(tmp_path), barrier, start_method))
        for i in range(WORKERS)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(240)
    assert [w.exitcode for w in workers] == [0] * WORKERS

    events = [
        json.loads(line)
        for path in sorted(tmp_path.glob("events-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    kinds = Counter(e["kind"] for e in events)
    assert kinds["execution.started"] == kinds["execution.completed"] == WORKERS * CALLS
    ids: Counter[str] = Counter()
    ids.update(e["event_id"] for e in events)
    # one execution id per call (its started and completed events share it) ...
    ids.update({e["execution_id"] for e in events if e["kind"] == "execution.started"})
    # ... and a new output artifact per call (no digest: a fresh UUIDv7 each)
    outputs = {
        e["artifact_id"] for e in events if e["kind"] == "artifact.recorded" and "models" in e["uri"]
    }
    assert len(outputs) == WORKERS * CALLS
    ids.update(outputs)
    shared = [i for i, n in ids.items() if n > 1]
    assert shared == []
    # the workers did draw ids in the same milliseconds: the test exercised the collision case
    millis = Counter(i[:13] for e in events for i in [e["event_id"]])
    assert max(millis.values()) > 1


STREAM_SCRIPT = """
import random, sys
import metatrail
try:
    import numpy as np
except ImportError:
    np = None

track = sys.argv[1] == "track"
random.seed(0)
if np is not None:
    np.random.seed(0)

@metatrail.track(cache=True)
def train(data: metatrail.Dataset, epochs: int) -> metatrail.Model:
    with open("model.bin", "wb") as f:
        f.write(b"weights")
    metatrail.log_metric("loss", 0.5)
    return metatrail.Model("model.bin")

def plain(data, epochs):
    return None

open("train.csv", "w").write("x,y\\n1,2\\n")
fn = train if track else plain
with metatrail.run("seeded", pipeline="stream") if track else open("train.csv") as _:
    fn(metatrail.Dataset("train.csv"), epochs=3)
    fn(metatrail.Dataset("train.csv"), epochs=3)  # the second call reads the cache
if track:
    assert metatrail.flush(60)
    store = metatrail.Store.open(metatrail.configure().store_url)
    states = sorted(e.state for e in store.executions().items)
    assert states == ["CACHED", "COMPLETE"], states
print(random.random(), random.getrandbits(64))
if np is not None:
    print(np.random.random(), np.random.randint(1 << 30))
"""


def test_recording_does_not_move_the_users_random_streams(tmp_path: Path) -> None:
    """A fresh interpreter (so first-use imports and set-up are included): seeded, it
    draws the same numbers after tracked calls — embedded store, a cache lookup, a metric —
    as after the same calls untracked. numpy's global state too, when numpy is there."""
    script = tmp_path / "stream.py"
    script.write_text(STREAM_SCRIPT)
    out = {}
    for mode in ("track", "plain"):
        folder = tmp_path / mode
        folder.mkdir()
        done = subprocess.run(
            [sys.executable, str(script), mode],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=180,
            env={k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")},
        )
        assert done.returncode == 0, done.stderr
        out[mode] = done.stdout.split()
    assert out["track"] == out["plain"]
    random.seed(0)
    assert out["plain"][:2] == [str(random.random()), str(random.getrandbits(64))]
    numpy = pytest.importorskip("numpy")
    assert len(out["plain"]) == 4
    numpy.random.seed(0)
    assert out["plain"][2] == str(numpy.random.random())


def test_retry_backoffs_draw_from_the_private_generator() -> None:
    """The relay's and the store boundary's back-offs run in the user's process (embedded
    mode): retrying must not advance ``random``'s global state (tenacity's jittered waits
    would)."""
    from metatrail.consumer.apply.retry import retry_transient
    from metatrail.schemas.settings import load_settings

    class Busy(Exception):
        retriable = True

    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise Busy("locked")
        return "ok"

    random.seed(7)
    before = random.getstate()
    assert retry_transient(flaky, load_settings(db_retry_max_wait_s=0.01)) == "ok"
    assert len(attempts) == 3
    waits = []
    for n in range(1, 9):
        state = RetryCallState(None, None, (), {})
        state.attempt_number = n
        wait = relay.backoff_s(state)
        assert 0 <= wait <= min(relay.RETRY_MAX_WAIT_S, 0.05 * 2 ** (n - 1))
        waits.append(wait)
    assert random.getstate() == before
    assert len(set(waits)) == len(waits)  # still jittered
