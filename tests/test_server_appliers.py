"""OpenLineage batches posted to a server on a database server are mapped and applied in
apply processes (``metatrail.consumer.server.appliers``), not in the worker's threads: a
batch starts a process, a bad body is answered from there as the worker would answer it,
an apply process that dies is a 503 for the batch it held (nothing of it applied), the
next batch starts another process, and the graph then holds each run once; the server's
shutdown stops its processes. A SQLite store keeps its batches in the worker's threads.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

from metatrail.consumer.openlineage import naming
from metatrail.schemas.settings import load_settings
from tests.fixtures.processes import alive, children
from tests.fixtures.server import LiveServer


def apply_processes() -> set[int]:
    """The living processes multiprocessing spawned from this one (any of its threads)."""
    found = set()
    for pid in children(os.getpid()):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing" in command and b"spawn_main" in command and alive(pid):
            found.add(pid)
    return found


def run_event(run_id: str, event_type: str = "COMPLETE", second: int = 9) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": f"2026-11-30T10:00:{second:02d}Z",
        "run": {"runId": run_id},
        "job": {"namespace": "tests", "name": "appliers.job"},
        "producer": "https://example.com/metatrail-tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "inputs": [{"namespace": "tests", "name": "raw"}],
        "outputs": [{"namespace": "tests", "name": "features"}],
    }


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 20
    while pid in apply_processes():
        assert time.monotonic() < deadline, f"apply process {pid} did not stop"
        time.sleep(0.05)


def test_batches_run_in_apply_processes_and_one_that_dies_is_a_503_then_replaced(server_store_url: str) -> None:
    before = apply_processes()
    server = LiveServer(server_store_url, load_settings(store_url=server_store_url, server_apply_processes=1)).start()
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    try:
        with server.client() as api:
            answer = api.post("/lineage/batch", json=[run_event(first, "START", 1), run_event(first)])
            assert answer.status_code == 200 and answer.json()["accepted"] == 2, answer.text
            (process,) = apply_processes() - before

            bad = api.post("/lineage/batch", content=b"[]", headers={"Content-Encoding": "br"})
            assert bad.status_code == 415, bad.text
            assert bad.json()["error"]["code"] == "unsupported_media_type" and "br" in bad.json()["error"]["message"]

            os.kill(process, signal.SIGKILL)
            wait_gone(process)
            lost = api.post("/lineage/batch", json=[run_event(second)])
            assert lost.status_code == 503, lost.text
            assert lost.json()["error"]["code"] == "apply_process_stopped" and lost.headers["Retry-After"] == "1"

            again = api.post("/lineage/batch", json=[run_event(second)])
            assert again.status_code == 200 and again.json()["accepted"] == 1, again.text
            assert apply_processes() - before - {process}, "no new apply process took the batch"

            runs = api.get("/executions", params={"filter": "custom_properties.ol_job_name = 'appliers.job'"}).json()
            assert sorted(x["custom_properties"]["ol_run_id"] for x in runs["items"]) == sorted([first, second])
            assert api.get(f"/executions/{naming.execution_id(first)}").json()["state"] == "COMPLETE"
    finally:
        server.stop()
    assert not apply_processes() - before, "the apply processes outlived the server"


def test_a_sqlite_store_applies_in_the_worker(sqlite_url: str) -> None:
    before = apply_processes()
    server = LiveServer(sqlite_url, load_settings(store_url=sqlite_url, server_apply_processes=2)).start()
    try:
        with server.client() as api:
            answer = api.post("/lineage/batch", json=[run_event(str(uuid.uuid4()))])
            assert answer.status_code == 200 and answer.json()["accepted"] == 1, answer.text
            assert not apply_processes() - before
    finally:
        server.stop()


def test_a_worker_has_the_cores_shared_among_the_workers_two_at_least(sqlite_url: str) -> None:
    from metatrail.consumer.server.appliers import Appliers
    from metatrail.consumer.store.engine import open_engine

    database = open_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")  # not connected to
    sqlite = open_engine(sqlite_url)
    try:
        cores = os.cpu_count() or 1
        assert Appliers(database, load_settings(server_workers=1)).size == max(2, cores)
        assert Appliers(database, load_settings(server_workers=64)).size == 2
        assert Appliers(database, load_settings(server_apply_processes=0)).size == 0
        assert Appliers(sqlite, load_settings(server_apply_processes=3)).size == 0
    finally:
        database.dispose()
        sqlite.dispose()
