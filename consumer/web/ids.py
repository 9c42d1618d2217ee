"""Ids as the UI shows them."""

from __future__ import annotations

from collections.abc import Iterable

from metatrail.consumer.query.store import Store

#: Characters of an id shown until the store can say the shortest unique prefix.
SHORT = 13


def short_ids(store: Store, ids: Iterable[str | None]) -> dict[str, str]:
    """id -> the form tables and labels show (the one place that decides it)."""
    return {i: i[:SHORT] for i in dict.fromkeys(ids) if i}


__all__ = ["short_ids"]
