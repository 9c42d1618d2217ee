"""The terminal as a new user meets it, on SQLite, PostgreSQL and MariaDB: ids by prefix
everywhere, short ids that never wrap, compare columns that say which run is which, no
bookkeeping in what is shown, one-line errors that name the option, a missing store
reported (not created), and ``--json`` on every command that prints data."""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from metatrail import Store
from metatrail.consumer.cli import app, main
from metatrail.consumer.cli.output import console
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.migrate import head_revision
from metatrail.schemas.errors import FilterError
from metatrail.schemas.reserved import RESERVED_PREFIX
from tests.fixtures.backends import SERVER_ADMIN_URLS
from tests.fixtures.graphs import BurstGraph, burst_graph, pipeline_graph

#: Commands that print no data of their own: long-running services that log, and the
#: demo, which tells its story in tables (the README says so).
NO_JSON = {"consume", "worker", "serve", "demo"}


@pytest.fixture
def recorded(store_url: str) -> Iterator[tuple[str, BurstGraph, dict[str, str]]]:
    """A store holding the fixture pipeline and a burst of UUIDv7 nodes, with the short id
    of every burst node."""
    engine = open_engine(store_url)
    pipeline_graph().apply(engine)
    graph = burst_graph(engine)
    short = Store(engine).short_ids(graph.all_ids())
    engine.dispose()
    yield store_url, graph, short


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 1) -> str:
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("metatrail: error: ") and err.count("\n") == 1, err
    return err


def test_every_id_argument_takes_a_prefix(recorded: tuple[str, BurstGraph, dict[str, str]],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    url, graph, short = recorded
    run_a, run_b = graph.runs
    execution, model = graph.executions[run_a][5], graph.models[run_a][5]
    shown = run_json(capsys, "show", short[execution], "--url", url)
    assert shown["id"] == execution and [m["key"] for m in shown["metrics"]] == ["auc"]  # type: ignore[index]
    traced = run_json(capsys, "lineage", short[model], "--up", "--url", url)
    assert {n["id"] for n in traced["nodes"]} == {model, execution}  # type: ignore[index]
    compared = run_json(capsys, "compare", short[run_a], short[run_b], "--url", url)
    assert [c["id"] for c in compared["columns"]] == [run_a, run_b]  # type: ignore[index]
    history = run_json(capsys, "compare", "--history", "auc", "--context", short[run_b][:6], "--url", url)
    assert {h["context_id"] for h in history} == {run_b} and len(history) == 20  # type: ignore[union-attr]
    found = run_json(capsys, "ls", "executions", "--filter", f"upstream_of('{short[model]}')", "--url", url)
    assert [x["id"] for x in found["items"]] == [execution]  # type: ignore[index]
    retired = run_json(capsys, "retire", short[model], "--url", url)
    assert retired["id"] == model and retired["state"] == "DELETED"  # type: ignore[index]

    err = one_line_error(capsys, ["show", execution[:8], "--url", url])
    assert "is ambiguous" in err and len(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", err)) >= 2


def _printed_whole(ids: list[str], out: str) -> None:
    for s in ids:
        assert s in out, f"{s} is not printed whole in:\n{out}"


@pytest.mark.parametrize("width", [80, 120])
def test_tables_print_short_ids_whole(recorded: tuple[str, BurstGraph, dict[str, str]], width: int,
                                      capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Short ids (8+ characters; the burst's need more) in ls, lineage and compare, never
    wrapped or folded even at 80 columns; --json keeps full ids."""
    url, graph, short = recorded
    monkeypatch.setattr(console, "width", width)
    run_a, run_b = graph.runs
    assert main(["ls", "executions", "--url", url, "--filter", "type = 'Trainer'", "--limit", "40"]) == 0
    out = capsys.readouterr().out
    _printed_whole([short[x] for x in graph.executions[run_a] + graph.executions[run_b]], out)
    assert max(len(s) for s in short.values()) > 8 and graph.executions[run_a][0] not in out
    assert main(["ls", "contexts", "--url", url, "--filter", "name LIKE 'nightly%'"]) == 0
    _printed_whole([short[run_a], short[run_b], short[graph.pipeline]], capsys.readouterr().out)
    assert main(["lineage", graph.models[run_b][0], "--url", url]) == 0
    _printed_whole([short[graph.models[run_b][0]], short[graph.executions[run_b][0]]], capsys.readouterr().out)
    listed = run_json(capsys, "ls", "executions", "--url", url)
    assert all(len(n["id"]) == 36 for n in listed["items"])  # type: ignore[index]


def test_compare_columns_say_which_is_which(recorded: tuple[str, BurstGraph, dict[str, str]],
                                            capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Two executions of the same step are told apart by their short ids; a run's timing
    and status are attributes, not params; bookkeeping never shows."""
    url, graph, short = recorded
    monkeypatch.setattr(console, "width", 100)
    first, second = graph.executions[graph.runs[0]][:2]
    assert main(["compare", first, second, "--url", url]) == 0
    out = capsys.readouterr().out
    _printed_whole([short[first], short[second]], out)
    assert out.count("train") >= 2
    assert main(["compare", *graph.runs, "--url", url]) == 0
    out = capsys.readouterr().out
    _printed_whole(["nightly-1", "nightly-2", short[graph.runs[0]], short[graph.runs[1]]], out)
    rows = {line.split("│")[1].strip() for line in out.splitlines() if line.count("│") >= 3}
    assert {"state", "start", "end", "duration", "param Trainer.lr", "param custom.owner"} <= rows
    assert not any("started_at" in r or "status" in r or RESERVED_PREFIX in r for r in rows), rows
    assert "2m30s" in out and "FAILED" in out
    for argv in (["compare", *graph.runs], ["show", graph.runs[0]], ["show", first], ["ls", "contexts"],
                 ["ls", "executions"], ["lineage", first, "--down"]):
        assert main([*argv, "--url", url]) == 0
        shown = capsys.readouterr().out
        assert RESERVED_PREFIX not in shown and "return_shape" not in shown
        assert RESERVED_PREFIX not in json.dumps(run_json(capsys, *argv, "--url", url))


def _cursor(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_bad_cursor_and_hops_name_the_option(recorded: tuple[str, BurstGraph, dict[str, str]],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    url, graph, _ = recorded
    by_name = run_json(capsys, "ls", "executions", "--order-by", "name", "--limit", "2", "--url", url)
    for cursor, why in [("garbage", "is not one"), ("zzzz", "is not one"),
                        (_cursor({"k": [1], "id": "x"}), "another query"),  # decodes; a number for a time
                        (_cursor({"k": [{"t": "2026-01-01T00:00:00"}], "id": "x"}), "another query"),  # naive
                        (by_name["next_cursor"], "another query")]:  # type: ignore[index]
        err = one_line_error(capsys, ["ls", "executions", "--cursor", cursor, "--url", url])
        assert "--cursor: expected the next_cursor of the previous page" in err and why in err, err
    err = one_line_error(capsys, ["lineage", graph.models[graph.runs[0]][0], "--hops", "-1", "--url", url], code=2)
    assert "'--hops'" in err and "max_hops" not in err
    err = one_line_error(capsys, ["ls", "executions", "--limit", "0", "--url", url], code=2)
    assert "'--limit'" in err
    with Store.open(url) as store, pytest.raises(FilterError, match="^max_hops: expected a hop count >= 0") as bad:
        store.lineage(graph.models[graph.runs[0]][0], max_hops=-1)
    assert bad.value.param == "max_hops"


def _missing_store_url(backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/elsewhere/metadata.db"
    from sqlalchemy.engine import make_url

    return make_url(SERVER_ADMIN_URLS[backend]).set(database=f"mt_absent_{uuid.uuid4().hex[:8]}").render_as_string(
        hide_password=False)


READS = [["ls", "executions"], ["ls", "artifacts", "--count"], ["show", "0195f3a2"], ["lineage", "0195f3a2"],
         ["compare", "0195f3a2"], ["compare", "--history", "auc"], ["retire", "0195f3a2"], ["dlq", "ls"],
         ["dlq", "replay", "--all"], ["db", "current"], ["db", "prune"]]


def test_reads_without_a_store_say_so_and_create_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """In an empty directory, with nothing configured: one line naming the URL and what to
    do, and no ``.metatrail`` appears."""
    for argv in READS:
        err = one_line_error(capsys, argv)
        assert "no metatrail store at sqlite:///.metatrail/metadata.db" in err and "METATRAIL_STORE_URL" in err, argv
    status = run_json(capsys, "status")
    assert "no metatrail store at" in status["store"]["error"]  # type: ignore[index]
    assert main(["status"]) == 0 and "store unavailable: no metatrail store" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_reads_of_a_url_without_a_store(backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch, store_url: str) -> None:
    """``--url`` or METATRAIL_STORE_URL naming a file or database that does not exist."""
    _ = store_url  # the backend must be reachable (skips or fails like every store test)
    url = _missing_store_url(backend, tmp_path)
    err = one_line_error(capsys, ["ls", "executions", "--url", url])
    assert "no metatrail store at" in err and url.split("/")[-1] in err
    monkeypatch.setenv("METATRAIL_STORE_URL", url)
    for argv in (["show", "0195f3a2"], ["dlq", "ls"], ["db", "current"]):
        assert "no metatrail store at" in one_line_error(capsys, argv)
    assert not (tmp_path / "elsewhere").exists()


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf command of the Typer app (Typer carries its own click: duck-typed)."""
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name), command


def test_every_command_that_prints_data_takes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """As the README claims; its exceptions are named there and here."""
    commands = dict(_commands(typer.main.get_command(app)))
    assert {("db", "upgrade"), ("db", "current"), ("dlq", "ls"), ("ls",), ("status",)} <= set(commands)
    for path, command in commands.items():
        options = {o for p in command.params for o in p.opts}
        if path[0] in NO_JSON:
            assert "--json" not in options, path
        else:
            assert "--json" in options, f"metatrail {' '.join(path)} has no --json"
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "Every command that prints data takes `--json`" in readme
    for name in NO_JSON:
        assert f"`{name}`" in readme.split("Every command that prints data takes `--json`")[1].split("\n\n")[0]
    url = f"sqlite:///{tmp_path}/up.db"
    first = run_json(capsys, "db", "upgrade", "--url", url)
    assert first["previous"] is None and first["current"] == first["head"] == head_revision()  # type: ignore[index]
    assert run_json(capsys, "db", "upgrade", "--url", url)["previous"] == head_revision()  # type: ignore[index]
