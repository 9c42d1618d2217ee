"""Ids as the UI shows them: the shortest prefix that names one node in the store (at
least 8 characters, like git's), from ``Store.short_ids``; links carry full ids."""

from __future__ import annotations

from collections.abc import Iterable

from metatrail.consumer.query.store import Store


def short_ids(store: Store, ids: Iterable[str | None]) -> dict[str, str]:
    """id -> the form tables and labels show (the one place that decides it)."""
    return store.short_ids([i for i in dict.fromkeys(ids) if i])


__all__ = ["short_ids"]
