"""Secrets in OpenLineage events never reach the store in clear.

As the SDK does for what it records (``producer/redact.py``): a value under a name that
contains one of the ``METATRAIL_REDACT`` words (any case) is stored as ``"***"`` and its
name listed in the node's custom property ``redacted``. Here the names are those of
``executionParameters`` keys, of facet fields at any depth (``spark_properties.
properties.spark.hadoop.fs.s3a.secret.key``), and of ``{"name"/"key": ..., "value": ...}``
entries such as ``environmentVariables`` lists. An event whose text holds none of the
words anywhere (most of them) is not walked at all.
"""

from __future__ import annotations

from typing import Any

from metatrail.schemas.settings import Settings

MARK = "***"
#: The custom property listing a node's redacted names (the SDK's name for it).
FLAG = "redacted"
#: How deep facets are walked.
MAX_DEPTH = 100


def default_words() -> tuple[str, ...]:
    """The words of ``METATRAIL_REDACT``'s default."""
    return Settings.model_construct(redact=str(Settings.model_fields["redact"].default)).redact_patterns


class Redactor:
    """Replaces secret values; ``words`` lower-cased (empty: redaction off)."""

    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = words
        self._needles = tuple(w.encode("utf-8") for w in words)
        self._memo: dict[str, bool] = {}

    def applies_to(self, canonical: bytes) -> bool:
        """Whether an event (its canonical JSON) names any word at all."""
        if not self._needles:
            return False
        lowered = canonical.lower()
        return any(needle in lowered for needle in self._needles)

    def secret(self, name: str) -> bool:
        found = self._memo.get(name)
        if found is None:
            lowered = name.lower()
            found = any(w in lowered for w in self.words)
            if len(self._memo) > 10_000:
                self._memo.clear()
            self._memo[name] = found
        return found

    def value(self, name: str, value: Any, found: list[str], depth: int = 0) -> Any:
        """``value`` (named ``name``) with every secret inside replaced by ``MARK``; the
        dotted names of what was replaced are appended to ``found``. Returns ``value``
        itself when nothing was."""
        if depth > MAX_DEPTH:
            return value
        if isinstance(value, dict):
            out: dict[str, Any] | None = None
            for key, item in value.items():
                if isinstance(key, str) and self.secret(key) and item != MARK:
                    new: Any = MARK
                    found.append(f"{name}.{key}")
                else:
                    new = self.value(f"{name}.{key}", item, found, depth + 1)
                if new is not item:
                    out = dict(value) if out is None else out
                    out[key] = new
            return value if out is None else out
        if isinstance(value, list):
            items: list[Any] | None = None
            for i, item in enumerate(value):
                new = self._entry(name, item, found, depth)
                if new is not item:
                    items = list(value) if items is None else items
                    items[i] = new
            return value if items is None else items
        return value

    def _entry(self, name: str, item: Any, found: list[str], depth: int) -> Any:
        """A list item; a ``{"name" or "key": n, "value": v}`` entry is judged by ``n``."""
        if isinstance(item, dict) and "value" in item:
            label = item.get("key", item.get("name"))
            if isinstance(label, str) and self.secret(label):
                if item["value"] == MARK:
                    return item
                found.append(f"{name}.{label}")
                return {**item, "value": MARK}
        return self.value(name, item, found, depth + 1)
