"""Cache truth: a cached call returns its earlier outputs only while their local files still
hold the content whose digest was recorded. A file changed between runs — even to the same
size, even with its mtime put back — makes the call run again, record the new digest, and
say on its execution why the cache was not used.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import metatrail
from metatrail import Dataset, Model, Store, track
from metatrail.consumer.query.domain import Execution
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.migrate import upgrade
from metatrail.producer import digest, emitter
from metatrail.producer.digest import digest_path

SIZE = 64


@pytest.fixture(params=["racy-window", "no-racy-window"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """Also without the racy window (a digest recorded just after a write is trusted at
    once), so that the checks rest on size, mtime and ctime alone."""
    if request.param == "no-racy-window":
        monkeypatch.setattr(digest, "RACY_NS", 0)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    metatrail.configure(
        transport="embedded", store_url=url, spool_path=tmp_path / "spool.db", strict=True
    )
    engine = open_engine(url)
    upgrade(engine)  # Store.open reads an existing store only (it creates nothing)
    engine.dispose()
    with Store.open(url) as opened:
        yield opened
    emitter.shutdown(5)


def _overwrite(path: Path, text: str, *, keep_mtime: bool) -> None:
    before = path.stat()
    path.write_bytes(text.encode().ljust(SIZE))
    assert path.stat().st_size == before.st_size
    if keep_mtime:
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_mtime_ns == before.st_mtime_ns


def _executions(store: Store) -> list[Execution]:
    assert metatrail.flush(30)
    return list(store.executions(order_by="created_at", limit=100).items)


@pytest.mark.parametrize("keep_mtime", [False, True], ids=["overwritten", "mtime-restored"])
def test_an_output_overwritten_between_runs_is_not_a_cache_hit(
    store: Store, tmp_path: Path, keep_mtime: bool
) -> None:
    bodies: list[int] = []

    @track(cache=True)
    def train(data: Dataset, epochs: int = 2) -> Model:
        bodies.append(epochs)
        Path("model.bin").write_bytes(f"weights of run {len(bodies)}".encode().ljust(SIZE))
        return Model("model.bin")

    data = Dataset("s3://bucket/train.csv", digest="sha256:" + "0" * 64)
    first = train(data)
    second = train(data)  # unchanged on disk: cached
    assert len(bodies) == 1 and second.id == first.id

    _overwrite(Path("model.bin"), "edited by another script", keep_mtime=keep_mtime)
    edited = digest_path(Path("model.bin"))
    third = train(data)
    assert len(bodies) == 2  # the body ran again
    assert third.digest == digest_path(Path("model.bin")) != first.digest
    fourth = train(data)  # the new output is intact: cached again, from the new execution
    assert len(bodies) == 2 and fourth.id == third.id

    execs = _executions(store)
    assert [e.state for e in execs] == ["COMPLETE", "CACHED", "COMPLETE", "CACHED"]
    original, cached, rerun, cached_again = execs
    assert cached.cached_from == original.id and cached_again.cached_from == rerun.id
    assert "cache_miss_reason" not in original.custom_properties
    reason = rerun.custom_properties["cache_miss_reason"]
    assert f"execution {original.id}" in reason
    assert "output 'output' file model.bin changed since it was recorded" in reason
    assert f"(digest {first.digest} is now {edited})" in reason
    (new_model,) = [a for a in store.artifacts("type = 'Model'").items if a.digest == third.digest]
    assert new_model.id == str(third.id)


def test_an_output_deleted_between_runs_says_so(store: Store) -> None:
    bodies: list[int] = []

    @track(cache=True)
    def export(epochs: int) -> Model:
        bodies.append(epochs)
        Path("out.bin").write_bytes(b"x" * SIZE)
        return Model("out.bin")

    export(1)
    Path("out.bin").unlink()
    export(1)
    assert len(bodies) == 2
    rerun = _executions(store)[-1]
    assert rerun.state == "COMPLETE"
    assert "output 'output' file out.bin no longer exists" in rerun.custom_properties["cache_miss_reason"]


def test_an_input_overwritten_with_its_mtime_restored_gets_its_new_digest(store: Store) -> None:
    """The digest record trusts a file only while size, mtime AND ctime are unchanged: an
    input rewritten to the same size with its mtime put back is hashed again, so the
    call's fingerprint changes and the old result is not reused."""
    bodies: list[str] = []

    @track(cache=True)
    def count(data: Dataset) -> Model:
        bodies.append(data.digest or "")
        return Model(f"s3://bucket/count-{len(bodies)}")

    Path("data.csv").write_bytes(b"a,b\n1,2\n".ljust(SIZE))
    count(Dataset("data.csv"))
    count(Dataset("data.csv"))
    assert len(bodies) == 1
    _overwrite(Path("data.csv"), "a,b\n3,4\n", keep_mtime=True)
    count(Dataset("data.csv"))
    assert len(bodies) == 2 and bodies[0] != bodies[1]
    assert bodies[1] == digest_path(Path("data.csv"))
