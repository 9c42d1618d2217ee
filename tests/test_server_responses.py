"""The API's JSON writer: compact UTF-8 JSON, the same document whichever library writes it
(orjson, or the standard library for what orjson refuses)."""

from __future__ import annotations

import json

import pytest

from metatrail.consumer.server.responses import JSONBody


@pytest.mark.parametrize("content", [
    {"name": "résumé", "values": [1, -2**63, 2**63 - 1, 0.1, None, True], "nested": {"k": ["v"]}},
    {"beyond_64_bits": 2**70, "negative": -2**65},  # orjson refuses these: the standard library writes them
    [],
])
def test_the_body_is_compact_utf8_json_of_the_content(content: object) -> None:
    body = JSONBody(content).body
    assert json.loads(body) == content
    assert body == json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def test_times_are_written_with_their_own_offset_however_often_they_recur() -> None:
    """Domain objects write each time as ``isoformat()`` does, UTC times remembered: an equal
    instant in another zone (equal, and hashed alike) keeps its own offset, and a UTC time
    written again reads the same."""
    from datetime import datetime, timedelta, timezone

    from metatrail.consumer.query import Artifact

    utc = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=timezone.utc)
    paris = utc.astimezone(timezone(timedelta(hours=1)))
    assert utc == paris
    first = Artifact("a", "Model", None, None, "LIVE", created_at=utc, updated_at=paris).to_json()
    again = Artifact("b", "Model", None, None, "LIVE", created_at=paris, updated_at=utc).to_json()
    assert (first["created_at"], first["updated_at"]) == ("2026-03-01T12:00:00.250000+00:00", "2026-03-01T13:00:00.250000+01:00")
    assert (again["created_at"], again["updated_at"]) == ("2026-03-01T13:00:00.250000+01:00", "2026-03-01T12:00:00.250000+00:00")


def test_to_json_converts_every_field_that_needs_it() -> None:
    """Fields are copied as they are only where their annotation allows nothing else (str,
    int, bool, None); times, floats, mappings and JSON values are converted wherever they
    sit, nested ones included."""
    import math
    from datetime import datetime, timezone

    from metatrail.consumer.query import Execution
    from metatrail.consumer.query.series import SeriesPoint

    when = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
    point = SeriesPoint(step=3, value=math.nan, timestamp=when).to_json()
    assert point == {"step": 3, "value": "NaN", "timestamp": "2026-03-01T12:00:00+00:00"}
    ex = Execution("x", "Trainer", None, "COMPLETE", started_at=when, code_version={"dirty": math.inf, "tags": ("a",)},
                   properties={"lr": -math.inf, "nested": {"at": [math.nan]}}).to_json()
    assert ex["started_at"] == "2026-03-01T12:00:00+00:00" and ex["ended_at"] is None
    assert ex["code_version"] == {"dirty": "Infinity", "tags": ["a"]}
    assert ex["properties"] == {"lr": "-Infinity", "nested": {"at": ["NaN"]}}
    assert json.loads(JSONBody(ex).body) == ex
