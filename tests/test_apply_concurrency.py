"""Two appliers at once on a database server: the second merges into what the first
commits while it waits, instead of failing on a key and retrying its whole batch.

Each test holds the first applier's transaction open (its batch applied, not yet
committed), starts the second in a thread, lets it reach the rows the first holds, then
commits the first: the second must finish without an error and the graph must be the
one both batches make.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from metatrail.consumer.apply import ApplyReport, apply_events, apply_in_session
from metatrail.consumer.query.store import Store
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.schemas.events import ContextUpserted, Event
from metatrail.schemas.ids import new_id
from metatrail.schemas.values import typed
from tests.fixtures.backends import backend_url

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _while_first_is_open(engine: Engine, first: Sequence[Event], second: Sequence[Event]) -> ApplyReport:
    """Apply ``first`` in a transaction kept open until ``second`` (applied in a thread on
    its own connection) has had time to block on it; then commit it. Returns the second's
    report; raises what the second raised."""
    outcome: dict[str, Any] = {}

    def run_second() -> None:
        try:
            with session_scope(engine) as session:
                outcome["report"] = apply_in_session(session, second)
        except BaseException as exc:  # handed to the test thread
            outcome["error"] = exc

    with session_scope(engine) as session:
        apply_in_session(session, first)
        thread = threading.Thread(target=run_second)
        thread.start()
        time.sleep(1.0)  # the second reads (and waits for) the rows this transaction holds
        assert thread.is_alive(), f"the second applier did not wait for the first: {outcome}"
    thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    report: ApplyReport = outcome["report"]
    return report


@pytest.fixture(params=["postgresql", "mariadb"])
def server_engine(request: pytest.FixtureRequest, server_databases: dict[str, Any], tmp_path: Path) -> Any:
    engine = open_engine(backend_url(request.param, server_databases, tmp_path))
    yield engine
    engine.dispose()


def _context(context_id: Any, name: str, seconds: int, parents: Sequence[Any] = (), **props: Any) -> ContextUpserted:
    return ContextUpserted(event_id=new_id(), occurred_at=T0 + timedelta(seconds=seconds), context_id=context_id,
                           type="Run", name=name, parent_ids=list(parents), properties=typed(props))


def test_a_node_the_first_applier_inserts_while_the_second_waits_is_merged_into(server_engine: Engine) -> None:
    shared, fresh = new_id(), new_id()
    apply_events(server_engine, [_context(shared, "dag", 0)])
    # Both batches lock the shared context, and both name a context new to the store.
    first = [_context(shared, "dag", 1, owner="a"), _context(fresh, "task", 1, [shared], attempt=1)]
    second = [_context(shared, "dag", 2, owner="b"), _context(fresh, "task", 2, [shared], attempt=2)]
    report = _while_first_is_open(server_engine, first, second)
    assert report.applied == 2
    with Store(server_engine) as store:
        assert store.get(str(fresh)).properties == {"attempt": 2}  # the later description wins
        assert store.get(str(shared)).properties == {"owner": "b"}


def test_an_event_the_first_applier_is_applying_is_a_duplicate_for_the_second(server_engine: Engine) -> None:
    event = _context(new_id(), "run", 1, attempt=1)
    other = _context(new_id(), "other", 1)
    report = _while_first_is_open(server_engine, [event], [event, other])
    assert (report.applied, report.duplicates) == (1, 1)
    with Store(server_engine) as store:
        assert store.get(str(event.context_id)).properties == {"attempt": 1}
        assert store.get(str(other.context_id)).name == "other"


def test_a_read_that_met_a_lock_leaves_no_reference_cycle(server_databases: dict[str, Any], tmp_path: Path) -> None:
    """PostgreSQL's NOWAIT read that met the first applier's lock drops its error's
    traceback: kept, it held every frame of the batch's stack, and so the whole batch, in a
    reference cycle until the cyclic collector ran (and that collection traversed it all)."""
    import gc

    engine = open_engine(backend_url("postgresql", server_databases, tmp_path))
    shared = new_id()
    apply_events(engine, [_context(shared, "dag", 0)])
    was = gc.isenabled()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        _while_first_is_open(engine, [_context(shared, "dag", 1)], [_context(shared, "dag", 2)])
        gc.collect()
        held = sorted({f"{o.f_code.co_name} ({o.f_code.co_filename})" for o in gc.garbage
                       if type(o).__name__ == "frame" and "consumer/apply" in o.f_code.co_filename})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable() if was else gc.disable()
        engine.dispose()
    assert held == []
