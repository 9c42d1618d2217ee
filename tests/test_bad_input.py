"""One bad message never stops the line: the bad-input corpus (tests/fixtures/badinput.py)
through the event boundary, ``apply_records``, ``metatrail ingest`` and ``metatrail
consume`` with the real broker — each bad event dead-lettered with its reason, its
neighbours applied, the consumer still running — on every backend."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from metatrail import Model, Store
from metatrail.consumer.apply import RawRecord, apply_records
from metatrail.consumer.cli import main
from metatrail.consumer.store.engine import open_engine, session_scope
from metatrail.consumer.store.models import DeadLetterRow
from metatrail.schemas import ContextUpserted, dump_event, new_id, parse_event, typed
from metatrail.schemas.errors import EventValidationError
from tests.fixtures.badinput import COLLIDING, corpus, full_events, is_uuid, neighbours
from tests.fixtures.broker import kafka_test_settings
from tests.fixtures.service import applied_count, committed_total, publish, running_loop, wait_for


def _letters(engine: Engine) -> dict[str, DeadLetterRow]:
    with session_scope(engine, write=False) as s:
        return {r.source_key: r for r in s.scalars(select(DeadLetterRow))}


def _check_neighbours_applied(engine: Engine) -> None:
    """The neighbours' names that differ only by case, accent or trailing space are all
    there, apart, and filters find each exactly."""
    store = Store(engine)
    names = sorted(a.name for a in store.artifacts("uri LIKE '/data/%'", limit=100).items)
    assert names == sorted(COLLIDING)
    run = store.contexts("name = 'neighbours'").items[0]
    assert run.properties == {n: i for i, n in enumerate(COLLIDING)}
    for i, name in enumerate(COLLIDING):
        quoted = "'" + name + "'"
        assert [a.name for a in store.artifacts(f"name = {quoted}").items] == [name]
        assert sorted(e.name for e in store.executions(f"parameters.`{name}` = {i}").items) == sorted(COLLIDING)
        assert store.count("artifact", f"properties.`{name}` = '{COLLIDING[0]}:{name}'") == 1
    assert store.count("context", "name = 'year one' OR name = 'year 9999' OR name = 'offset at the edge'") == 3


# -- the boundary ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", corpus(), ids=lambda b: b.label)
def test_every_bad_payload_is_an_event_validation_error_with_its_reason(bad: object) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(bad.payload)  # type: ignore[attr-defined]
    assert bad.reason in str(info.value)  # type: ignore[attr-defined]


def test_integer_schema_version_is_reported_as_not_a_string() -> None:
    data = json.loads(dump_event(ContextUpserted(context_id=new_id(), type="Run", name="r")))
    with pytest.raises(EventValidationError, match="schema_version must be a string, got int 1"):
        parse_event(json.dumps(dict(data, schema_version=1)))
    with pytest.raises(EventValidationError, match="schema_version must be a string"):
        parse_event(dict(data, schema_version=1))


def test_decoded_events_are_bounded_too() -> None:
    """A dict handed over in-process gets the same limits as bytes (no RecursionError)."""
    deep: object = 0
    for _ in range(10_000):
        deep = [deep]
    data = json.loads(dump_event(ContextUpserted(context_id=new_id(), type="Run", name="r")))
    with pytest.raises(EventValidationError, match="nested deeper"):
        parse_event(dict(data, x=deep))
    with pytest.raises(EventValidationError, match="NUL"):
        parse_event(dict(data, name="a\x00"))


_VALID = [dump_event(e) for e in full_events()]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from(_VALID),
    cut=st.integers(0, 2000),
    insert=st.binary(max_size=8) | st.sampled_from([b"[" * 200, b"[" * 5000, b"\\ud800", b"\\u0000", b"1" + b"0" * 400,
                                                     b'"0001-01-01T00:00:00+09:00"', b"\xed\xa0\x80", b"1e400"]),
    drop=st.integers(0, 4),
)
def test_mutated_events_raise_only_event_validation_error(base: bytes, cut: int, insert: bytes, drop: int) -> None:
    at = cut % (len(base) + 1)
    payload = base[:at] + insert + base[at + drop:]
    try:
        parse_event(payload)
    except EventValidationError:
        pass


# -- apply_records: the one write path --------------------------------------------------------
def test_bad_input_corpus_is_dead_lettered_and_its_neighbours_applied(engine: Engine) -> None:
    bad = corpus()
    good = neighbours()
    records = [RawRecord(dump_event(e), f"good:{i}") for i, e in enumerate(good)]
    for i, b in enumerate(bad):  # each bad one in the middle of valid ones, in one batch
        records.insert(2 * i % (len(records) + 1), RawRecord(b.payload, f"bad:{i}"))
    report = apply_records(engine, records)
    assert (report.applied, report.dead_lettered) == (len(good), len(bad))
    letters = _letters(engine)
    assert len(letters) == len(bad)
    for i, b in enumerate(bad):
        row = letters[f"bad:{i}"]
        assert b.reason in row.reason, (b.label, row.reason)
        assert bytes(row.payload) == b.payload
        assert row.event_id is None or is_uuid(row.event_id)
    _check_neighbours_applied(engine)
    # and once more: redelivery changes nothing, the poison is stored once
    again = apply_records(engine, records)
    assert (again.applied, again.duplicates, again.dead_lettered) == (0, len(good), len(bad))
    assert len(_letters(engine)) == len(bad)


def test_a_dead_letter_can_hold_any_source_and_reason(engine: Engine) -> None:
    """Texts that are not storable (a file name that is not UTF-8, NUL, huge) still make a
    dead letter: the write of a dead letter cannot fail on its texts."""
    odd_path = "file:/tmp/\udcff\x00" + "d" * 400
    report = apply_records(engine, [RawRecord(b"\xff\x00 not json", odd_path + ":1"),
                                    RawRecord(b"[1]", odd_path + ":2")])
    assert report.dead_lettered == 2
    keys = sorted(_letters(engine))
    assert len(keys) == 2 and all(len(k) <= 255 for k in keys) and keys[0] != keys[1]


# -- metatrail ingest ------------------------------------------------------------------------
def test_ingest_keeps_the_valid_lines_batched_with_bad_ones(store_url: str, tmp_path: Path) -> None:
    """Through the real command in a subprocess: exit 0, no traceback, every valid line
    applied although each batch holds bad ones, every bad line dead-lettered."""
    bad = corpus()
    good = neighbours()
    lines = [dump_event(e) for e in good]
    for i, b in enumerate(bad):
        lines.insert(2 * i % (len(lines) + 1), b.payload.replace(b"\n", b" "))
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    done = subprocess.run(
        [sys.executable, "-c", "from metatrail.consumer.cli import entrypoint; entrypoint()",
         "ingest", str(path), "--url", store_url, "--batch-size", "50", "--json"],
        capture_output=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    assert b"Traceback" not in done.stderr
    counts = json.loads(done.stdout)
    assert (counts["applied"], counts["dead_lettered"]) == (len(good), len(bad))
    engine = open_engine(store_url)
    try:
        _check_neighbours_applied(engine)
        assert len(_letters(engine)) == len(bad)
    finally:
        engine.dispose()


# -- metatrail consume with the real broker ---------------------------------------------------
@pytest.mark.kafka
def test_consume_dead_letters_the_corpus_applies_the_neighbours_and_keeps_running(
    kafka_bootstrap: str, topic_prefix: str, store_url: str
) -> None:
    settings = kafka_test_settings(kafka_bootstrap, topic_prefix, store_url, kafka_max_poll_interval_ms=20_000,
                                   kafka_max_poll_records=100)
    bad = corpus()
    good = neighbours()
    key = b"one-partition"  # bad ones between good ones, in order, in one partition
    messages: list[tuple[bytes | None, bytes]] = [(key, dump_event(e)) for e in good]
    for i, b in enumerate(bad):
        messages.insert(2 * i % (len(messages) + 1), (key, b.payload))
    engine = open_engine(store_url)
    try:
        with running_loop(settings, engine) as loop:
            publish(kafka_bootstrap, settings.events_topic, messages)
            wait_for(lambda: committed_total(settings, kafka_bootstrap) == len(messages), 180,
                     what="every message consumed and committed")
            assert applied_count(engine) == len(good)
            letters = _letters(engine)
            assert len(letters) == len(bad)
            by_offset = {row.offset: row for row in letters.values()}
            offsets = {payload: offset for offset, (_, payload) in enumerate(messages)}
            for b in bad:
                assert b.reason in by_offset[offsets[b.payload]].reason, b.label
            # still running: a good event after all that is applied too
            late = ContextUpserted(context_id=new_id(), type="Run", name="after the storm")
            publish(kafka_bootstrap, settings.events_topic, [(key, dump_event(late))])
            wait_for(lambda: applied_count(engine) == len(good) + 1, 60, what="the late event applied")
            assert loop.stats.dead_lettered == len(bad)
        _check_neighbours_applied(engine)
    finally:
        engine.dispose()


# -- the SDK ---------------------------------------------------------------------------------
def test_a_too_deep_property_value_is_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    deep: object = 0
    for _ in range(10_000):
        deep = [deep]
    caplog.set_level(logging.ERROR, logger="metatrail.producer")
    model = Model("m.bin", properties={"deep": deep, "ok": 1})  # non-strict: no RecursionError, no raise
    assert set(model.properties) == {"ok"}
    assert "property 'deep'" in caplog.text and "nested deeper than 64 levels" in caplog.text
    with pytest.raises(ValueError, match="nested deeper than 64 levels"):
        typed({"deep": deep})


def test_colliding_names_recorded_by_the_sdk_apply_apart(store_url: str, tmp_path: Path) -> None:
    """The embedded SDK on every backend: parameters, properties and output names that
    differ only by case, accent or trailing space are kept apart (MariaDB once retried
    such batches until the embedded flush gave up)."""
    script = tmp_path / "train.py"
    script.write_text(
        "import metatrail\n"
        "from metatrail import Model, log_params, track\n"
        f"metatrail.configure(store_url={store_url!r}, spool_path={str(tmp_path / 'spool.db')!r})\n"
        f"NAMES = {COLLIDING!r}\n"
        "@track(type='Trainer')\n"
        "def train():\n"
        "    log_params({n: i for i, n in enumerate(NAMES)})\n"
        "    return [Model(f'/m/{n}', name=n, properties={m: n for m in NAMES}) for n in NAMES]\n"
        "train()\n"
        "assert metatrail.flush(60), 'not delivered'\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-3000:]
    with Store.open(store_url) as store:
        [execution] = store.executions("type = 'Trainer'").items
        assert execution.properties == {n: i for i, n in enumerate(COLLIDING)}
        assert sorted(m.name for m in store.artifacts("type = 'Model'").items) == sorted(COLLIDING)
        for n in COLLIDING:
            assert [m.name for m in store.artifacts(f"name = '{n}'").items] == [n]
            assert store.count("artifact", f"properties.`{n}` = 'lr'") == 1
        assert store.count("artifact", "properties.`LR ` = 'lr'") == 0


def test_the_embedded_sdk_dead_letters_what_no_store_holds_and_goes_on(store_url: str, tmp_path: Path) -> None:
    """A user's call whose parameters hold a NUL character (PostgreSQL text takes none) or
    a lone surrogate (a file name that is not UTF-8): the user's program runs on, the bad
    event is a dead letter with its reason on every backend, the calls around it apply,
    and the embedded flush completes."""
    script = tmp_path / "train.py"
    script.write_text(
        "import metatrail\n"
        "from metatrail import track\n"
        f"metatrail.configure(store_url={store_url!r}, spool_path={str(tmp_path / 'spool.db')!r})\n"
        "@track(type='Step')\n"
        "def step(note):\n"
        "    return len(note)\n"
        "assert step('before') == 6\n"
        "assert step('nul\\x00inside') == 10\n"
        "assert step('file-\\udcff.csv') == 10\n"
        "assert step('after') == 5\n"
        "assert metatrail.flush(60), 'not delivered'\n"
        "print('done')\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=180, cwd=tmp_path)
    assert done.returncode == 0 and b"done" in done.stdout, done.stderr.decode(errors="replace")[-3000:]
    engine = open_engine(store_url)
    try:
        letters = list(_letters(engine).values())
        assert letters and all("NUL" in row.reason or "surrogate" in row.reason for row in letters), letters
        assert {row.kind for row in letters} <= {"execution.started", "execution.completed"}
        with Store.open(store_url) as store:
            notes = {e.properties.get("note") for e in store.executions("type = 'Step'").items}
        assert {"before", "after"} <= notes
    finally:
        engine.dispose()
