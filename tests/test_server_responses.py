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
