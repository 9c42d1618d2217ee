"""``metatrail ls | show | lineage | compare | retire`` through ``metatrail.consumer.cli.main``."""

from __future__ import annotations

import json

import pytest

from metatrail.consumer.cli import main
from metatrail.consumer.store.engine import open_engine
from tests.fixtures.graphs import gid, pipeline_graph


@pytest.fixture
def url(sqlite_url: str) -> str:
    engine = open_engine(sqlite_url)
    pipeline_graph().apply(engine)
    engine.dispose()
    return sqlite_url


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_ls_json_filter_order_cursor_count(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "ls", "artifacts", "--url", url, "--filter", "type = 'Dataset' AND context.name = 'run-2'",
                    "--order-by", "name desc")
    assert [a["name"] for a in data["items"]] == ["raw-2", "features-2"]  # type: ignore[index]
    first = run_json(capsys, "ls", "executions", "--url", url, "--limit", "2", "--order-by", "name")
    assert [e["name"] for e in first["items"]] == ["evaluator-1", "evaluator-2"]  # type: ignore[index]
    second = run_json(capsys, "ls", "executions", "--url", url, "--limit", "2", "--order-by", "name",
                      "--cursor", first["next_cursor"])  # type: ignore[index]
    assert [e["name"] for e in second["items"]] == ["evaluator-3", "examplegen-1"]  # type: ignore[index]
    assert run_json(capsys, "ls", "artifacts", "--url", url, "--count") == {"count": 18}
    assert run_json(capsys, "ls", "artifacts", "--url", url, "--count", "--all") == {"count": 20}


def test_ls_table(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "contexts", "--url", url, "--filter", "type = 'Run'"]) == 0
    out = capsys.readouterr().out
    assert "run-1" in out and "run-3" in out and "pipe" not in out.replace("pipeline", "")


def test_show_and_lineage(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    shown = run_json(capsys, "show", gid("trainer-2"), "--url", url)
    assert shown["properties"]["optimizer"] == "adam"  # type: ignore[index]
    assert {m["key"] for m in shown["metrics"]} == {"loss", "accuracy"}  # type: ignore[index]
    graph = run_json(capsys, "lineage", gid("model-2"), "--up", "--hops", "2", "--url", url)
    assert {n["name"] for n in graph["nodes"]} == {"model-2", "trainer-2", "features-2"}  # type: ignore[index]
    assert graph["truncated"] is True  # type: ignore[index]
    assert {"source": gid("trainer-2"), "target": gid("model-2"), "kind": "output", "role": "out"} in graph["edges"]  # type: ignore[index]
    assert main(["lineage", gid("raw-1"), "--down", "--url", url]) == 0
    tree = capsys.readouterr().out
    assert "transform-1" in tree and "pushed-1" in tree and "nodes" in tree
    assert main(["lineage", gid("trainer-1"), "--both", "--url", url]) == 0
    assert "upstream:" in capsys.readouterr().out


def test_compare_and_history(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = run_json(capsys, "compare", gid("run-1"), gid("run-2"), "--url", url, "--metric", "loss")
    assert data["params"]["Trainer.learning_rate"] == [0.01, 0.02]  # type: ignore[index]
    assert list(data["metrics"]) == ["Trainer.loss"]  # type: ignore[index]
    hist = run_json(capsys, "compare", "--history", "auc/slice%", "--exec-type", "Evaluator", "--context", "pipe",
                    "--url", url)
    assert [h["context_name"] for h in hist] == ["run-1", "run-2", "run-3"]  # type: ignore[union-attr]
    assert main(["compare", gid("run-1"), gid("run-3"), "--url", url]) == 0
    assert "Trainer.optimizer" in capsys.readouterr().out


def test_retire_through_an_event(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_json(capsys, "retire", gid("model-2"), "--state", "ABANDONED", "--reason", "leaked labels", "--url", url)
    assert result["state"] == "ABANDONED" and result["reason"] == "leaked labels"  # type: ignore[index]
    models = run_json(capsys, "ls", "artifacts", "--url", url, "--filter", "type = 'Model'")
    assert [m["name"] for m in models["items"]] == ["model-3"]  # type: ignore[index]
    everything = run_json(capsys, "ls", "artifacts", "--url", url, "--filter", "type = 'Model'", "--all")
    assert len(everything["items"]) == 3  # type: ignore[index]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["ls", "artifacts", "--filter", "type = "], "position 7: expected a value"),
        (["ls", "widgets"], "expected artifacts, executions or contexts"),
        (["show", "00000000-0000-0000-0000-000000000000"], "no artifact, execution or context"),
        (["lineage", "nope"], "'nope' is not an id or id prefix"),
        (["lineage", "00000000-0000-0000-0000-000000000000"], "no artifact or execution"),
        (["lineage", gid("pipe")], "is a context, not an artifact or execution"),
        (["ls", "artifacts", "--cursor", "zzz"], "--cursor: expected the next_cursor of the previous page"),
        (["retire", gid("trainer-1")], "not an artifact"),
        (["compare", "00000000"], "no context or execution with id '00000000'"),
        (["compare", "00000000-0000-0000-0000-000000000000"], "no run (context) or execution"),
    ],
)
def test_bad_arguments_get_one_line(url: str, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main([*argv, "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("metatrail: error: ") and message in err and err.count("\n") == 1


def test_default_store_url_from_settings(url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METATRAIL_STORE_URL", url)
    assert main(["ls", "artifacts", "--count", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"count": 18}
