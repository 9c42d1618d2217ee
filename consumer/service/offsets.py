"""Offset bookkeeping: what to commit after a batch, where to rewind after a failure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kafka.structs import OffsetAndMetadata, TopicPartition

#: Metadata stored with every commit, so an operator can tell who committed.
COMMIT_METADATA = "metatrail"


def next_offsets(batch: Mapping[TopicPartition, Iterable[Any]]) -> dict[TopicPartition, OffsetAndMetadata]:
    """Per partition, the offset after the last message of ``batch`` (what to commit once
    the batch is applied). Partitions without messages are left out."""
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for tp, messages in batch.items():
        last = max((m.offset for m in messages), default=None)
        if last is not None:
            offsets[tp] = OffsetAndMetadata(last + 1, COMMIT_METADATA, -1)
    return offsets


def first_offsets(batch: Mapping[TopicPartition, Iterable[Any]]) -> dict[TopicPartition, int]:
    """Per partition, the first offset of ``batch`` (where to seek to re-read it)."""
    firsts: dict[TopicPartition, int] = {}
    for tp, messages in batch.items():
        first = min((m.offset for m in messages), default=None)
        if first is not None:
            firsts[tp] = first
    return firsts


def merge_offsets(
    older: Mapping[TopicPartition, OffsetAndMetadata], newer: Mapping[TopicPartition, OffsetAndMetadata]
) -> dict[TopicPartition, OffsetAndMetadata]:
    """Both maps combined, keeping the higher offset of a partition."""
    merged = dict(older)
    for tp, meta in newer.items():
        if tp not in merged or merged[tp].offset < meta.offset:
            merged[tp] = meta
    return merged
