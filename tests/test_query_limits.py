"""Queries refuse what they cannot answer with a ``FilterError`` naming the fault, before
the database sees it: cursors that decode but were not made by the ordering (or were
edited), and filters larger than every backend evaluates — on every backend, through
``Store`` and the CLI."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import Engine

from metatrail import Store
from metatrail.consumer.cli import main
from metatrail.consumer.query.filters import MAX_TERMS, MAX_VALUES
from metatrail.schemas.errors import FilterError
from tests.fixtures.graphs import pipeline_graph


def _cursor(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


MALFORMED = [
    ("created_at", {"k": [1], "id": "x"}),  # once: 'int' has no attribute 'tzinfo'
    ("created_at", {"k": [{"t": "2026-01-01T00:00:00"}], "id": "x"}),
    ("created_at", {"k": ["yesterday"], "id": "x"}),
    ("created_at", {"k": [{"t": 5}], "id": "x"}),
    ("name", {"k": [{"t": "2026-01-01T00:00:00+00:00"}], "id": "x"}),
    ("name", {"k": [["a"]], "id": "x"}),
    ("name", {"k": ["a\u0000"], "id": "x"}),
    ("properties.rows", {"k": ["many", "a"], "id": "x"}),
    ("properties.rows", {"k": [10**30, "a"], "id": "x"}),
    ("properties.rows", {"k": [True, "a"], "id": "x"}),
    ("name", {"k": ["a"], "id": 7}),
    ("name", {"k": ["a"], "id": "\u0000"}),
    ("name", [1, 2]),
    ("name", {"k": "a", "id": "x"}),
    ("name", {"k": [], "id": "x"}),
]


@pytest.mark.parametrize("order_by,data", MALFORMED, ids=[f"{o}-{i}" for i, (o, _) in enumerate(MALFORMED)])
def test_a_cursor_that_decodes_but_is_malformed_is_a_filter_error(engine: Engine, order_by: str, data: object) -> None:
    store = Store(engine)
    if store.count("artifact", include_retired=True) == 0:
        pipeline_graph().apply(engine)
    with pytest.raises(FilterError, match="another query|is not one") as info:
        store.find("artifact", None, order_by=order_by, cursor=_cursor(data), limit=2)
    assert info.value.param == "cursor"


def test_a_real_cursor_still_pages(engine: Engine) -> None:
    pipeline_graph().apply(engine)
    store = Store(engine)
    for order_by in ("created_at", "name", "properties.rows", "-properties.rows"):
        seen: list[str] = []
        cursor = None
        while True:
            page = store.find("artifact", None, order_by=order_by, cursor=cursor, limit=3)
            seen.extend(a.id for a in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == store.count("artifact")


def test_the_cli_reports_a_malformed_cursor_in_one_line(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "artifacts", "--url", sqlite_url, "--cursor", _cursor({"k": [1], "id": "x"})]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "next_cursor of the previous page" in err and "tzinfo" not in err


def _or_filter(n: int) -> str:
    return " OR ".join(f"name = 'n{i}'" for i in range(n))


def _and_filter(n: int) -> str:
    return " AND ".join(f"properties.p{i} != 1" for i in range(n))


def test_filters_up_to_the_limit_run_on_every_backend(engine: Engine) -> None:
    pipeline_graph().apply(engine)
    store = Store(engine)
    total = store.count("artifact")
    assert store.count("artifact", _or_filter(MAX_TERMS)) == 0
    assert store.count("artifact", _and_filter(MAX_TERMS)) == 0  # no node has p0
    assert store.count("artifact", "NOT (" + _or_filter(MAX_TERMS) + ")") == total
    numbers = ", ".join(str(i) for i in range(MAX_VALUES - 1))
    assert store.count("artifact", f"properties.missing IN ({numbers}) OR name = 'x'") == 0


@pytest.mark.parametrize("text", [_or_filter(1_500), _and_filter(1_500)], ids=["or", "and"])
def test_a_1500_term_filter_is_refused_naming_the_limit(engine: Engine, text: str) -> None:
    store = Store(engine)
    with pytest.raises(FilterError, match=f"at most {MAX_TERMS} comparisons"):
        store.count("artifact", text)
    with pytest.raises(FilterError, match=f"at most {MAX_TERMS} comparisons"):
        store.artifacts(text)


def test_the_cli_refuses_a_1500_term_filter_in_one_line(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "artifacts", "--url", sqlite_url, "--filter", _or_filter(1_500)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"at most {MAX_TERMS} comparisons" in err
    assert "Expression tree" not in err


def test_too_many_values_are_refused() -> None:
    from metatrail.consumer.query.filters import parse_filter

    values = ", ".join(str(i) for i in range(MAX_VALUES + 1))
    with pytest.raises(FilterError, match=f"at most {MAX_VALUES} values"):
        parse_filter(f"properties.x IN ({values})")
