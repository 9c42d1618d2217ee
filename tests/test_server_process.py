"""``metatrail serve`` as a real process: it refuses to expose an open server, SIGTERM
lets a request in flight finish before it exits, and a token never shows up in its logs
or in the store in clear."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from metatrail.schemas.events import ArtifactRecorded
from metatrail.schemas.ids import new_id
from metatrail.schemas.parse import dump_event
from tests.fixtures.processes import alive, children, descendants


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METATRAIL_")}
    env["METATRAIL_STORE_URL"] = store
    return env


def start(args: list[str], store: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, "-m", "metatrail", "serve", *args], env=env_for(store),
                                stdout=out, stderr=subprocess.STDOUT)


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the server exited early:\n{log.read_text()}"
        try:
            if httpx.get(url + "/api/v1/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the server did not start:\n{log.read_text()}")


def post_signalled_midway(proc: subprocess.Popen[bytes], port: int, path: str, media: str, body: bytes,
                          signal_server: Callable[[], None]) -> bytes:
    """POST ``body``, signalling the server once the headers and half the body are in: the
    request is in flight. Asserts the server is still up a second later and answers 200;
    returns the answer's body."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as conn:
        conn.sendall(head + body[: len(body) // 2])
        time.sleep(0.5)
        signal_server()
        time.sleep(1.0)
        assert proc.poll() is None, "the server exited with a request in flight"
        conn.sendall(body[len(body) // 2:])
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    assert status.startswith(b"HTTP/1.1 200"), answer[:500]
    return rest


@pytest.fixture
def store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def test_a_public_address_without_tokens_is_refused_in_one_line(store: str, tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "metatrail", "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                          env=env_for(store), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to serve on 0.0.0.0" in lines[0] and "--insecure" in lines[0]
    assert "Traceback" not in done.stderr + done.stdout


def test_sigterm_lets_the_request_in_flight_finish(store: str, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(["--port", str(port)], store, log)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        body = b"\n".join(dump_event(ArtifactRecorded(artifact_id=new_id(), type="Data", uri=f"s3://{i}"))
                          for i in range(200))
        rest = post_signalled_midway(proc, port, "/api/v1/events", "application/x-ndjson", body,
                                     lambda: proc.send_signal(signal.SIGTERM))
        assert b'"applied":200' in rest
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "Traceback" not in log.read_text()


def test_the_token_never_reaches_logs_or_the_store_in_clear(store: str, tmp_path: Path) -> None:
    created = subprocess.run([sys.executable, "-m", "metatrail", "token", "create", "--scope", "write"],
                             env=env_for(store), capture_output=True, text=True, timeout=120)
    token = created.stdout.strip()
    assert created.returncode == 0 and token.startswith("mt_") and token not in created.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(["--port", str(port)], store, log)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        api = f"http://127.0.0.1:{port}/api/v1"
        good = {"Authorization": f"Bearer {token}"}
        assert httpx.get(api + "/artifacts", headers=good).status_code == 200
        assert httpx.post(api + "/events", headers=good, content=b"not json\n").json()["dead_lettered"] == 1
        assert httpx.get(api + "/artifacts", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
        assert httpx.get(api + "/nothing", headers=good).status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    text = log.read_text()
    assert "GET /api/v1/artifacts" in text, "the access log is on (the check below means something)"
    assert token not in text and token[3:20] not in text
    db = Path(store.removeprefix("sqlite:///"))
    for path in [db, *db.parent.glob(db.name + "-*")]:
        assert token.encode() not in path.read_bytes(), f"the token is in {path.name} in clear"


def _workers_of(parent: int, log: str) -> list[int]:
    """Pids of the worker processes ``parent`` spawned and that started serving."""
    started = children(parent)
    return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", log) if int(pid) in started]


def test_workers_share_the_port_apply_concurrent_writes_once_and_drain_on_sigterm(store_url: str,
                                                                                     tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    proc = start(["--port", str(port), "--workers", "2"], store_url, log)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = _workers_of(proc.pid, log.read_text())
        assert len(set(workers)) == 2, log.read_text()
        # Both workers take requests at once: each request records the same 100 artifacts
        # (new to the store: the workers race to insert them) and 100 of its own.
        shared = [dump_event(ArtifactRecorded(artifact_id=new_id(), type="Data", uri=f"s3://shared/{i}"))
                  for i in range(100)]

        def post(n: int) -> dict[str, int]:
            own = [dump_event(ArtifactRecorded(artifact_id=new_id(), type="Data", uri=f"s3://{n}/{i}"))
                   for i in range(100)]
            answer = httpx.post(api + "/events", content=b"\n".join(shared + own), timeout=120,
                                headers={"Content-Type": "application/x-ndjson"})
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(post, range(8)))
        assert sum(a["applied"] for a in answers) == 100 + 8 * 100
        assert sum(a["duplicates"] for a in answers) == 7 * 100
        listed = httpx.get(api + "/artifacts", params={"count": "true", "page_size": 1}, timeout=60).json()
        assert listed["total"] == 900
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not any(alive(pid) for pid in workers)
    finally:
        if proc.poll() is None:  # the test failed: stop the workers too, not only their parent
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                for pid in _workers_of(proc.pid, log.read_text()):
                    os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait(10)
    assert "Traceback" not in log.read_text()


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def started(pid: int) -> set[int]:
    """The processes of server ``pid`` once they have all started (their CPU time at rest)."""
    deadline = time.monotonic() + 60
    family, spent = descendants(pid), -1.0
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = descendants(pid)
        used = sum(cpu_seconds(p) for p in now)
        if now == family and used - spent < 0.05:
            return now
        family, spent = now, used
    raise AssertionError("the server's processes did not settle")


def test_a_lineage_batch_in_flight_finishes_in_its_apply_process_when_the_group_is_signalled(
    server_store_url: str, tmp_path: Path
) -> None:
    """A service manager (or a terminal's Ctrl-C) signals every process of the group: the
    apply processes leave it to their worker, which lets the batch in flight finish."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "metatrail", "serve", "--port", str(port), "--workers", "2"],
                                env=env_for(server_store_url), stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc, log)
        runs = [str(uuid.uuid4()) for _ in range(300)]
        body = json.dumps([{"eventType": "COMPLETE", "eventTime": "2026-11-30T10:00:00Z", "run": {"runId": run},
                            "job": {"namespace": "tests", "name": "drain"}, "producer": "https://example.com/tests",
                            "outputs": [{"namespace": "tests", "name": f"out-{i}"}]}
                           for i, run in enumerate(runs)]).encode()
        family = started(proc.pid)
        rest = post_signalled_midway(proc, port, "/api/v1/lineage/batch", "application/json", body,
                                     lambda: os.killpg(proc.pid, signal.SIGTERM))
        assert b'"accepted":300' in rest and b'"rejected":0' in rest, rest[-300:]
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 10  # multiprocessing's resource tracker ends on its own, just after
        while (left := {p for p in family if alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, "processes outlived the server"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert "Traceback" not in log.read_text()
