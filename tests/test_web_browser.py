"""The web UI in a real browser: Debian's headless Chromium driven by Selenium against a
live server on the demo's store. The lineage graph draws, expands and comes back from
its URL; the runs table filters, pages and shows a bad filter's error; compare hides
equal rows; a chart draws; the per-slice page shows mens_dress falling; the diff of the
two days' models names the first difference; and no page logs a JavaScript error or
sends a request to another host. Each test saves a screenshot under tests/output/."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from metatrail.consumer.query.store import Store
from tests.fixtures.browser import Browser
from tests.fixtures.demo import DemoStore
from tests.fixtures.server import LiveServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(demo_store_of: Callable[[str], DemoStore]) -> Iterator[tuple[LiveServer, DemoStore]]:
    demo = demo_store_of("sqlite")
    server = LiveServer(demo.url).start()
    yield server, demo
    server.stop()


@pytest.fixture
def web(served: tuple[LiveServer, DemoStore], make_browser: Callable[[str], Browser]) -> Iterator[tuple[Browser, DemoStore]]:
    server, demo = served
    browser = make_browser(server.url)
    yield browser, demo
    assert browser.console_errors() == [], "JavaScript errors in the browser's console"
    assert browser.foreign_requests() == [], "requests to another host"


def graph_ready(browser: Browser) -> int:
    """Waits for the lineage graph's layout; the number of drawn nodes."""
    count = browser.wait(lambda: browser.js(
        "var g = document.getElementById('graph'); return g && g.dataset.ready === '1' && g.dataset.nodeCount"),
        what="the lineage graph's layout")
    return int(count)


def click_node(browser: Browser, node_id: str) -> None:
    """A real click on the node where cytoscape drew it."""
    x, y, width, height = browser.js(
        "var n = window.mtLineage.cy.getElementById(arguments[0]).renderedPosition();"
        "var g = document.getElementById('graph'); return [n.x, n.y, g.clientWidth, g.clientHeight];", node_id)
    graph = browser.driver.find_element(By.ID, "graph")
    ActionChains(browser.driver).move_to_element_with_offset(graph, int(x - width / 2), int(y - height / 2)).click().perform()


def node_ids_of_type(browser: Browser, type_: str) -> list[str]:
    return browser.js("return window.mtLineage.cy.nodes().filter(n => n.data('node').type === arguments[0]).map(n => n.id())",
                      type_)  # type: ignore[no-any-return]


def test_lineage_draws_expands_and_its_url_reproduces_the_view(web: tuple[Browser, DemoStore]) -> None:
    browser, demo = web
    browser.open(f"/lineage/{demo.model_id}")
    assert graph_ready(browser) == 4  # the model, its trainer, evaluator and pusher
    [trainer] = node_ids_of_type(browser, "Trainer")
    click_node(browser, trainer)
    browser.wait(lambda: "2 upstream" in browser.driver.find_element(By.ID, "panel-hidden").text, what="the panel")
    browser.driver.find_element(By.ID, "expand-node").click()
    browser.wait(lambda: graph_ready(browser) == 6, what="the trainer's inputs")
    assert {"Examples", "Schema"} <= set(browser.js("return window.mtLineage.cy.nodes().map(n => n.data('node').type)"))
    url = browser.driver.current_url
    assert parse_qs(urlsplit(url).query)["expand"] == [trainer]

    # Double-click expands too; then two selected nodes show the path between them.
    [examples] = node_ids_of_type(browser, "Examples")
    ActionChains(browser.driver).double_click(browser.driver.find_element(By.ID, "graph")).perform()  # background: nothing
    browser.js("window.mtLineage.cy.getElementById(arguments[0]).emit('dbltap')", examples)
    browser.wait(lambda: graph_ready(browser) > 6, what="the examples' neighbours")
    drawn = graph_ready(browser)
    [pusher] = node_ids_of_type(browser, "Pusher")
    click_node(browser, examples)
    click_node(browser, pusher)
    path = browser.wait(lambda: browser.js("return window.mtLineage.cy.elements('.path').length"), what="a path")
    assert path >= 5  # examples -> trainer -> model -> pusher: 4 nodes, 3 edges at least
    browser.screenshot("lineage")
    view_url = browser.driver.current_url
    assert set(parse_qs(urlsplit(view_url).query)["sel"][0].split(",")) == {examples, pusher}

    # The URL reproduces the view in a fresh page load.
    browser.open("/")
    browser.driver.get(view_url)
    assert graph_ready(browser) == drawn
    assert sorted(browser.js("return window.mtLineage.cy.nodes().map(n => n.id())")) == sorted(
        browser.js("return JSON.parse(document.getElementById('graph-data').textContent).nodes.map(n => n.id)"))
    assert browser.js("return window.mtLineage.cy.elements('.path').length") == path  # the selection came back too


def test_runs_table_filters_and_pages(web: tuple[Browser, DemoStore]) -> None:
    browser, demo = web
    browser.open("/executions?size=5")
    browser.wait(lambda: browser.driver.find_element(By.ID, "row-range").text == "Rows 1–5 of 18", what="the count")
    browser.driver.find_element(By.ID, "next-page").click()
    browser.wait(lambda: browser.driver.find_element(By.ID, "row-range").text == "Rows 6–10 of 18", what="page 2")
    assert "page=" in browser.driver.current_url  # htmx pushed the page's URL
    box = browser.driver.find_element(By.ID, "filter")
    box.clear()
    box.send_keys("type = 'Trainer'", Keys.ENTER)
    browser.wait(lambda: browser.driver.find_element(By.ID, "row-range").text == "Rows 1–2 of 2", what="the filter")
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "#rows tbody tr")
    assert len(rows) == 2 and all("Trainer" in r.text for r in rows)
    assert "filter=type" in browser.driver.current_url
    browser.screenshot("runs-table")


def test_a_bad_filter_shows_the_error(web: tuple[Browser, DemoStore]) -> None:
    browser, _ = web
    browser.open("/artifacts")
    browser.driver.find_element(By.ID, "filter").send_keys("type = 'Model' AND (", Keys.ENTER)
    error = browser.wait(lambda: browser.driver.find_element(By.ID, "filter-error"), what="the filter error")
    assert "position" in error.text and error.find_element(By.TAG_NAME, "mark")
    browser.screenshot("bad-filter")


def test_compare_only_differences_hides_equal_rows(web: tuple[Browser, DemoStore]) -> None:
    browser, demo = web
    browser.open("/compare?runs=" + ",".join(demo.evaluator_ids))
    same = len(browser.driver.find_elements(By.CSS_SELECTOR, "#compare tr.same"))
    differs = len(browser.driver.find_elements(By.CSS_SELECTOR, "#compare tr.differs"))
    assert same > 0 and differs > 0
    browser.driver.find_element(By.ID, "toggle-diff").click()
    browser.wait(lambda: "only=diff" in browser.driver.current_url, what="only differences")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#compare tr.same") == []
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "#compare tr.differs")) == differs
    browser.screenshot("compare")


def canvas_ink(browser: Browser, selector: str) -> int:
    """Pixels of the chart's canvas that are neither transparent nor white."""
    return browser.js("""
        var c = document.querySelector(arguments[0] + ' canvas');
        var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data, n = 0;
        for (var i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) n++;
        return n;""", selector)  # type: ignore[no-any-return]


def test_a_metric_chart_draws(web: tuple[Browser, DemoStore]) -> None:
    browser, demo = web
    browser.open(f"/executions/{demo.trainer_ids[1]}")
    browser.wait(lambda: browser.js("return document.querySelector('.chart[data-drawn=\"1\"] canvas') !== null"),
                 what="the loss chart")
    assert canvas_ink(browser, ".chart[data-drawn='1']") > 200
    browser.screenshot("execution")
    browser.open("/compare?runs=" + ",".join(demo.trainer_ids) + "&chart=loss")
    browser.wait(lambda: browser.js("return document.querySelector('#compare-chart[data-drawn=\"1\"]') !== null"),
                 what="the overlaid curves")
    assert canvas_ink(browser, "#compare-chart") > 200
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "#compare-chart .u-legend .u-series")) == 3  # step + 2 runs


def test_per_slice_page_lists_mens_dress_with_a_negative_delta(web: tuple[Browser, DemoStore]) -> None:
    browser, demo = web
    browser.open("/slices?runs=" + ",".join(demo.evaluator_ids))
    first = browser.driver.find_element(By.CSS_SELECTOR, "#slices tbody tr[data-slice]")
    assert first.get_attribute("data-slice") == "mens_dress"
    delta = first.find_element(By.CSS_SELECTOR, "td.delta").text
    assert delta.startswith("-") and float(delta) < -0.1
    browser.screenshot("slices")


def test_diff_of_the_two_days_models_names_the_first_difference(web: tuple[Browser, DemoStore]) -> None:
    browser, demo = web
    with Store.open(demo.url) as store:
        day1, day2 = [m.id for m in store.find("artifact", "type = 'Model'", order_by="created_at", limit=2).items]
    assert day2 == demo.model_id
    browser.open(f"/artifacts/{day1}")
    assert browser.driver.find_element(By.ID, "impact-link").get_attribute("href").endswith(f"/impact/{day1}")
    browser.open(f"/diff?a={day1[:8]}&b={day2[:8]}")
    verdict = browser.driver.find_element(By.ID, "verdict").text
    assert verdict.startswith("first difference: ExampleGen read raw/impressions-day2.csv")
    assert "ImpressionExport ran with day=2 instead of 1" in verdict
    assert "largest drop: Evaluator auc/mens_dress" in verdict
    changed = len(browser.driver.find_elements(By.CSS_SELECTOR, "#steps tr[data-status='changed']"))
    assert changed > 0 and browser.driver.find_elements(By.CSS_SELECTOR, "#steps tr[data-status='unchanged']")
    browser.driver.find_element(By.ID, "toggle-changed").click()
    browser.wait(lambda: "only=changed" in browser.driver.current_url, what="only changed steps")
    assert browser.driver.find_elements(By.CSS_SELECTOR, "#steps tr[data-status='unchanged']") == []
    assert len(browser.driver.find_elements(By.CSS_SELECTOR, "#steps tr[data-status='changed']")) == changed
    browser.screenshot("diff")


def test_no_page_logs_a_javascript_error_or_leaves_the_server(web: tuple[Browser, DemoStore]) -> None:
    browser, demo = web
    evaluators = ",".join(demo.evaluator_ids)
    pages = ["/", "/executions", "/artifacts", "/contexts", f"/executions/{demo.trainer_ids[0]}",
             f"/artifacts/{demo.model_id}", f"/contexts/{demo.pipeline_id}", f"/lineage/{demo.model_id}?depth=3",
             f"/compare?runs={evaluators}", f"/charts?runs={','.join(demo.trainer_ids)}&key=loss",
             f"/slices?runs={evaluators}", "/executions?cols=properties.epochs", f"/impact/{demo.model_id}"]
    for path in pages:
        browser.open(path)
        if path.startswith(("/lineage/", "/artifacts/")):
            graph_ready(browser)
        if "/charts" in path:
            browser.wait(lambda: browser.js("return document.querySelector('.chart[data-drawn]') !== null"), what="chart")
        name = urlsplit(path).path.strip("/").split("/")[0] or "home"
        browser.screenshot(f"page-{name}")
        assert browser.console_errors() == [], path
    assert browser.foreign_requests() == []
    assert any("/static/vendor/cytoscape.min.js" in u for u in browser.requests)
