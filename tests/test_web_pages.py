"""The web UI over plain HTTP against a live server on a store built by the demo, on
SQLite, PostgreSQL and MariaDB: every page answers 200 with its key content, its JSON
twin holds the same data, ids work by prefix, bad input gets a page that says what is
wrong, and the UI follows the server's token rules (sign-in cookie, write scope to
retire, the token never in a page or a log)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from urllib.parse import quote

import httpx
import pytest

from metatrail.consumer.query.store import Store
from metatrail.consumer.server.tokens import create_token
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.web import assets
from tests.fixtures.backends import BACKENDS
from tests.fixtures.demo import DemoStore
from tests.fixtures.server import LiveServer


@pytest.fixture(params=BACKENDS)
def demo(request: pytest.FixtureRequest, demo_store_of: Callable[[str], DemoStore]) -> DemoStore:
    return demo_store_of(request.param)


@pytest.fixture
def ui(demo: DemoStore) -> Iterator[httpx.Client]:
    server = LiveServer(demo.url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            yield client
    finally:
        server.stop()


def page(ui: httpx.Client, path: str, status: int = 200) -> str:
    response = ui.get(path)
    assert response.status_code == status, (path, response.text[:2000])
    if status == 200:
        assert response.headers["content-type"].startswith("text/html")
    return response.text


def twin(ui: httpx.Client, path: str) -> dict:  # type: ignore[type-arg]
    base, _, query = path.partition("?")
    response = ui.get(("/index" if base == "/" else base) + ".json" + (f"?{query}" if query else ""))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_home_lists_runs_pipelines_failures_dead_letters_and_lag(ui: httpx.Client, demo: DemoStore) -> None:
    html = page(ui, "/")
    assert "Recent runs" in html and "shoe-ctr" in html and "Dead letters" in html
    assert "No failed executions" in html
    assert "No broker configured" in html  # consumer lag: none without Kafka
    data = twin(ui, "/")
    assert [p["id"] for p in data["pipelines"]] == [demo.pipeline_id]
    assert {r["id"] for r in data["runs"]} <= set(demo.run_ids) and len(data["runs"]) == 10
    assert data["dead_letters"]["total"] == 0 and data["failures"] == []
    # The assets are local: no page names another host.
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)


def test_tables_filter_sort_page_and_choose_columns(ui: httpx.Client, demo: DemoStore) -> None:
    html = page(ui, "/executions?filter=" + quote("type = 'Trainer'") + "&cols=properties.epochs")
    assert "Rows 1–2 of 2" in html and "Trainer" in html and "Evaluator" not in html
    data = twin(ui, "/executions?filter=" + quote("type = 'Trainer'") + "&cols=properties.epochs")
    assert [i["id"] for i in data["items"]] == list(demo.trainer_ids)
    assert [data["cells"][i]["properties.epochs"] for i in demo.trainer_ids] == [6, 6]
    # tables show short ids, link the full ones
    assert f'href="/executions/{demo.trainer_ids[0]}"' in html and data["short"][demo.trainer_ids[0]] in html

    # paging: every execution once over pages of 5; the last page has no next link
    seen: list[str] = []
    path = "/executions?size=5&order=-started_at"
    while path:
        data = twin(ui, path)
        seen += [i["id"] for i in data["items"]]
        path = f"/executions?size=5&order=-started_at&page={data['next_page']}&at={len(seen) + 1}" if data["next_page"] else ""
    assert len(seen) == len(set(seen)) == data["total"] == 18
    second = f"/executions?size=5&order=-started_at&page={twin(ui, '/executions?size=5&order=-started_at')['next_page']}&at=6"
    html = page(ui, second)  # the count comes after the page, in a request of its own
    assert "Rows 6–10 of …" in html and "« First" in html and 'hx-get="' in html
    assert "Rows 6–10 of 18" in page(ui, second + "&count=1") and twin(ui, second)["total"] is None

    # metric columns: the chooser offers them, the cells hold the last values
    data = twin(ui, "/executions?filter=" + quote("type = 'Evaluator'") + "&cols=metrics.auc/mens_dress")
    assert "metrics.auc/mens_dress" in data["choices"]
    day1, day2 = (data["cells"][i]["metrics.auc/mens_dress"] for i in demo.evaluator_ids)
    assert day2 < day1

    # sorting by a column: names in order
    # the total is counted up to a cap (a large table says "10,000+"): the store stops there
    with Store.open(demo.url) as store:
        assert store.count("execution", limit=5) == 5 and store.count("execution", limit=100) == 18
        assert store.count("execution", "type = 'Trainer'", limit=1) == 1
    names = [i["name"] for i in twin(ui, "/artifacts?order=name&size=100")["items"]]
    assert names == sorted(names) and len(names) > 10
    assert "type" in page(ui, "/contexts?filter=" + quote("type = 'Run'"))


def test_a_bad_filter_is_shown_at_its_position(ui: httpx.Client) -> None:
    html = page(ui, "/artifacts?filter=" + quote("type = 'Model' AND"))
    assert 'id="filter-error"' in html and "position" in html and "<mark>" in html
    data = twin(ui, "/artifacts?filter=" + quote("type = 'Model' AND"))
    assert data["error"]["position"] is not None and data["items"] == []
    assert ui.get("/artifacts.json?size=0").status_code == 400  # a bad argument names itself
    assert "size" in ui.get("/artifacts.json?size=0").json()["error"]["message"]


def test_node_pages_by_prefix_with_their_neighbourhood(ui: httpx.Client, demo: DemoStore) -> None:
    trainer = demo.trainer_ids[1]
    html = page(ui, f"/executions/{trainer[:13]}")
    for text in ("Parameters", "epochs", "Code version", "source hash", "git commit", "Environment", "numpy",
                 "Inputs", "Outputs", "Metrics", "loss", 'class="chart"'):
        assert text in html, text
    data = twin(ui, f"/executions/{trainer}")
    assert data["node"]["id"] == trainer and data["node"]["code_version"]["source_hash"]
    assert any(m["key"] == "loss" and m["chart"] for m in data["metrics"])

    cached = twin(ui, "/executions?filter=" + quote("state = 'CACHED'"))["items"][0]
    html = page(ui, f"/executions/{cached['id']}")
    assert 'id="cached-from"' in html and f"/executions/{cached['cached_from']}" in html

    html = page(ui, f"/artifacts/{demo.model_id[:10]}")
    for text in ("ctr-model", "Produced by", "Consumed by", "Retire", 'id="graph"', "graph-data"):
        assert text in html, text
    preview = twin(ui, f"/artifacts/{demo.model_id}")["preview"]
    assert {n["type"] for n in preview["nodes"]} >= {"Trainer", "Evaluator", "Pusher"}

    html = page(ui, f"/contexts/{demo.pipeline_id}")
    assert "shoe-ctr" in html and "Children" in html

    assert "no artifact" in page(ui, "/artifacts/ffffffff-0000", 404).lower() or "not" in page(ui, "/artifacts/ffffffff-0000", 404)
    assert ui.get("/artifacts/ffffffff-0000.json").json()["error"]["code"] == "not_found"


def test_lineage_page_and_expansion_in_the_url(ui: httpx.Client, demo: DemoStore) -> None:
    html = page(ui, f"/lineage/{demo.model_id}")
    assert 'id="graph"' in html and "cytoscape" in html and "Depth" in html
    data = twin(ui, f"/lineage/{demo.model_id}")
    graph = data["graph"]
    assert data["depth"] == 1 and graph["start"] == demo.model_id
    assert {n["type"] for n in graph["nodes"]} == {"Model", "Trainer", "Evaluator", "Pusher"}
    trainer = next(n for n in graph["nodes"] if n["type"] == "Trainer")
    assert trainer["hidden_up"] == 2  # its examples and schema are not shown yet: "+2"
    expanded = twin(ui, f"/lineage/{demo.model_id}?expand={trainer['id']}")["graph"]
    assert len(expanded["nodes"]) == len(graph["nodes"]) + 2
    assert {"Examples", "Schema"} <= {n["type"] for n in expanded["nodes"]}
    assert next(n for n in expanded["nodes"] if n["id"] == trainer["id"])["hidden_up"] == 0
    deeper = twin(ui, f"/lineage/{demo.model_id}?depth=3&dir=up")["graph"]
    assert {"ExampleGen", "SchemaGen"} <= {n["type"] for n in deeper["nodes"]}
    assert "Evaluator" not in {n["type"] for n in deeper["nodes"]}
    assert ui.get(f"/lineage/{demo.model_id}.json?dir=sideways").status_code == 400


def test_compare_marks_differences_and_hides_equal_rows(ui: httpx.Client, demo: DemoStore) -> None:
    runs = ",".join(demo.evaluator_ids)
    everything = twin(ui, f"/compare?runs={runs}")
    only = twin(ui, f"/compare?runs={runs}&only=diff")
    assert len(everything["columns"]) == 2
    assert any(not r["differs"] for r in everything["rows"]) and all(r["differs"] for r in only["rows"])
    assert len(only["rows"]) == everything["differing_rows"] < len(everything["rows"])
    assert "auc/mens_dress" in {r["key"] for r in only["rows"]}
    html = page(ui, f"/compare?runs={runs}&only=diff")
    assert "Only differences ✓" in html and 'class="same"' not in html
    assert 'class="same"' in page(ui, f"/compare?runs={runs}")
    trainers = ",".join(t[:13] for t in demo.trainer_ids)
    html = page(ui, f"/compare?runs={trainers}&chart=loss")
    assert 'id="compare-chart"' in html
    assert "at most 10" in ui.get("/compare.json?runs=" + ",".join(f"{i:04x}" for i in range(11))).text


def models_of_days(ui: httpx.Client) -> tuple[str, str]:
    """The demo's day-1 and day-2 models."""
    items = twin(ui, "/artifacts?filter=" + quote("type = 'Model'") + "&order=created_at")["items"]
    assert len(items) == 2
    return items[0]["id"], items[1]["id"]


def test_diff_page_shows_the_verdict_the_changed_steps_and_the_metrics(ui: httpx.Client, demo: DemoStore) -> None:
    day1, day2 = models_of_days(ui)
    assert day2 == demo.model_id
    html = page(ui, f"/diff?a={day1[:10]}&b={day2[:10]}")
    verdict = re.search(r'<div class="verdict" id="verdict">(.*?)</div>', html, re.S)
    assert verdict and "first difference: ExampleGen read raw/impressions-day2.csv" in verdict.group(1)
    assert "ImpressionExport ran with day=2 instead of 1" in verdict.group(1)
    assert "largest drop" in verdict.group(1)
    # the changed parameter, in the ImpressionExport row of the steps table
    start = html.index('ImpressionExport" data-status="changed"')
    text = html[start:html.index('<tr class="st-', start)]
    assert re.search(r'<tr data-what="param"><th>param</th><td>day</td><td class="wrap">1</td><td>→</td>'
                     r'<td class="wrap">2', text), text
    assert 'data-status="unchanged"' in html  # SchemaGen, served from the cache
    data = twin(ui, f"/diff?a={day1}&b={day2}")
    assert data["diff"]["a"]["id"] == day1 and data["diff"]["verdict"]["first"]
    export = next(s for s in data["steps"] if s["type"] == "ImpressionExport")
    assert {(c["what"], c["key"], c["a"], c["b"]) for c in export["changes"]} >= {("param", "day", "1", "2")}
    slices = [r for r in data["metric_rows"] if r["step"] == "Evaluator" and r["metric"] == "auc" and r["slice"]]
    assert slices[0]["slice"] == "mens_dress" and slices[0]["drop"] and slices[0]["delta"] < -0.1
    only = twin(ui, f"/diff?a={day1}&b={day2}&only=changed")
    assert only["steps"] and all(s["status"] not in ("same", "unchanged") for s in only["steps"])
    assert len(only["steps"]) < len(data["steps"])
    assert "Only changed steps ✓" in page(ui, f"/diff?a={day1}&b={day2}&only=changed")
    # links in: compare (two runs) and the artifact page
    runs = ",".join(demo.evaluator_ids)
    assert f'href="/diff?a={demo.evaluator_ids[0]}&amp;b={demo.evaluator_ids[1]}"' in page(ui, f"/compare?runs={runs}")
    assert f'href="/impact/{day2}"' in page(ui, f"/artifacts/{day2}")
    # errors: the error page, or the JSON error in the twin
    assert "no " in page(ui, f"/diff?a={day1}&b=ffffffff-0000", 404).lower()
    assert ui.get(f"/diff.json?a={day1}&b=ffffffff-0000").json()["error"]["code"] == "not_found"
    assert "give two ids" in page(ui, f"/diff?a={day1}", 400)
    assert "an artifact" in page(ui, f"/diff?a={day1}&b={demo.trainer_ids[0]}", 400)


def test_impact_page_lists_the_model_and_the_pushed_model_first(ui: httpx.Client, demo: DemoStore) -> None:
    raw = twin(ui, "/artifacts?filter=" + quote("type = 'ImpressionLog'") + "&order=-created_at")["items"][0]
    html = page(ui, f"/impact/{raw['id'][:10]}")
    assert "What did this touch?" in html and 'id="impact-summary"' in html
    assert [m for m in re.findall(r'<h2 data-rank="(\w+)">(\w+)', html)][:2] == [("deployed", "PushedModel"),
                                                                                 ("model", "Model")]
    assert f'href="/artifacts/{demo.model_id}"' in html and "not deployed" in html
    # The group is of deployment records, not of deployed artifacts: its tag says so.
    assert re.search(r'data-rank="deployed">PushedModel \(\d+\) <span class="tag"[^>]*>deployments<', html)
    data = twin(ui, f"/impact/{raw['id']}")
    groups = data["impact"]["groups"]
    assert [a["artifact"]["id"] for a in groups[1]["artifacts"]] == [demo.model_id]
    assert groups[1]["artifacts"][0]["made_by"] == "Trainer"
    assert {s["name"] for s in data["impact"]["steps"]} >= {"trainer", "pusher"}
    assert ui.get("/impact/ffffffff-0000.json").json()["error"]["code"] == "not_found"
    assert "is an execution, not an artifact" in page(ui, f"/impact/{demo.trainer_ids[0]}", 404)


def test_charts_are_downsampled_series_per_run(ui: httpx.Client, demo: DemoStore) -> None:
    runs = ",".join(demo.trainer_ids)
    data = twin(ui, f"/charts?runs={runs}&key=loss")
    assert len(data["series"]) == 2 and all(len(s["points"]) >= 2 for s in data["series"])
    cut = twin(ui, f"/charts?runs={runs}&key=loss&points=2")
    assert all(len(s["points"]) <= 2 for s in cut["series"])
    assert "loss" in page(ui, f"/charts?runs={runs}&key=loss")


def test_per_slice_page_shows_mens_dress_falling_on_day_2(ui: httpx.Client, demo: DemoStore) -> None:
    runs = ",".join(demo.evaluator_ids)
    data = twin(ui, f"/slices?runs={runs}")
    assert data["metric"] == "auc" and data["sort"] == "delta"
    first = data["rows"][0]
    assert first["slice"] == "mens_dress" and first["delta"] < -0.1  # worst change first
    assert all(r["sizes"][0] and r["sizes"][0] > 0 for r in data["rows"])
    html = page(ui, f"/slices?runs={runs}")
    assert 'data-slice="mens_dress"' in html and "Per-slice auc" in html
    flagged = twin(ui, f"/slices?runs={runs}&min=100000")
    assert all(r["small"] for r in flagged["rows"])
    single = twin(ui, f"/slices?runs={demo.evaluator_ids[1]}&metric=accuracy")
    assert single["sort"] == "value" and all(r["delta"] is None for r in single["rows"])
    assert ui.get(f"/slices.json?runs={runs}&metric=nope").status_code == 400


def test_pages_without_the_bundled_assets_say_what_to_run(demo_store_of: Callable[[str], DemoStore],
                                                          monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    demo = demo_store_of("sqlite")
    monkeypatch.setattr(assets, "STATIC", tmp_path)
    server = LiveServer(demo.url).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.get("/")
            assert response.status_code == 503 and "npm ci" in response.text
            assert len(response.text.strip().splitlines()) == 1
            assert client.get("/api/v1/artifacts").status_code == 200  # the API works
            assert client.get("/index.json").status_code == 200
    finally:
        server.stop()


def test_sign_in_with_a_token_kept_in_a_cookie(demo_store_of: Callable[[str], DemoStore],
                                               caplog: pytest.LogCaptureFixture) -> None:
    demo = demo_store_of("sqlite")  # the token rules are the server's, on every backend
    engine = open_engine(demo.url)
    reader, _ = create_token(engine, "read", name="ui-reader")
    writer, _ = create_token(engine, "write", name="ui-writer")
    server = LiveServer(demo.url).start()
    caplog.set_level(logging.DEBUG)
    for name in ("uvicorn.access", "uvicorn.error"):  # uvicorn's loggers do not propagate
        logging.getLogger(name).setLevel(logging.INFO)
        logging.getLogger(name).addHandler(caplog.handler)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            response = client.get(f"/lineage/{demo.model_id}")
            assert response.status_code == 303 and response.headers["location"].startswith("/login?next=%2Flineage%2F")
            assert client.get("/index.json").status_code == 401
            origin = {"Origin": server.url}
            bad = client.post("/login", data={"token": "mt_nope", "next": "/"}, headers=origin)
            assert bad.status_code == 401 and "unknown or revoked" in bad.text
            assert client.post("/login", data={"token": reader, "next": "/"}).status_code == 403  # no Origin
            ok = client.post("/login", data={"token": reader, "next": "https://elsewhere.example/"}, headers=origin)
            assert ok.status_code == 303 and ok.headers["location"] == "/"  # never an open redirect
            cookie = ok.headers["set-cookie"].lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            html = client.get("/").text
            assert "Recent runs" in html and reader not in html
            # a read token cannot retire; a write token can, through the one apply path
            denied = client.post(f"/artifacts/{demo.model_id}/retire", data={"state": "DELETED"}, headers=origin)
            assert denied.status_code == 403 and "write" in denied.text
            client.post("/login", data={"token": writer, "next": "/"}, headers=origin)
            done = client.post(f"/artifacts/{demo.model_id}/retire", data={"state": "ABANDONED", "reason": "ui test"},
                               headers=origin)
            assert done.status_code == 303
            assert client.get(f"/artifacts/{demo.model_id}.json").json()["node"]["state"] == "ABANDONED"
            client.post(f"/artifacts/{demo.model_id}/retire", data={"state": "LIVE"}, headers=origin)
            assert client.get(f"/artifacts/{demo.model_id}.json").json()["node"]["state"] == "LIVE"
            client.post("/logout", headers=origin)
            assert client.get("/").status_code == 303
    finally:
        server.stop()
        for name in ("uvicorn.access", "uvicorn.error"):
            logging.getLogger(name).removeHandler(caplog.handler)
            logging.getLogger(name).setLevel(logging.WARNING)
        from metatrail.consumer.server.tokens import list_tokens, revoke_token

        for token in list_tokens(engine):
            revoke_token(engine, token.id)
        engine.dispose()
    # the server's log lines (the test's own HTTP client logs the cookie it was sent)
    server_lines = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("/login" in line for line in server_lines) and not any(reader in line or writer in line for line in server_lines)


def test_a_failed_run_and_a_dead_letter_show_on_home_and_the_execution_page(live_server: LiveServer,
                                                                            api: httpx.Client) -> None:
    from metatrail.schemas.events import ErrorInfo, ExecutionFailed
    from metatrail.schemas.ids import new_id
    from metatrail.schemas.parse import dump_event

    failed = ExecutionFailed(execution_id=new_id(), type="Trainer", name="train",
                             error=ErrorInfo(type="ValueError", message="loss became NaN at step 7"))
    body = "[" + dump_event(failed).decode() + ', {"kind": "no.such.kind"}]'
    result = api.post("/events", content=body, headers={"Content-Type": "application/json"}).json()
    assert result["applied"] == 1 and result["dead_lettered"] == 1
    with httpx.Client(base_url=live_server.url, timeout=60) as ui:
        html = page(ui, "/")
        assert 'id="failures"' in html and "loss became NaN" in html and "No failed executions" not in html
        assert twin(ui, "/")["dead_letters"]["total"] == 1
        html = page(ui, f"/executions/{str(failed.execution_id)[:13]}")
        assert 'id="run-error"' in html and "ValueError" in html and "loss became NaN at step 7" in html
        assert "no metrics" in html and "no parameters" in html
