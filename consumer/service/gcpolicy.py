"""Garbage-collector settings for a process whose job is applying event batches.

A batch of 2,000 events allocates hundreds of thousands of container objects (parsed
events, plan rows, row dicts) that all live until the batch commits. With CPython's
default thresholds that triggers several collections per batch, and each full collection
traverses every object the process holds, including everything start-up allocated
(SQLAlchemy metadata, pydantic schemas, kafka-python): measured at a quarter to a third of
the consumer's CPU on PostgreSQL. Nothing of that is garbage, so collecting it is waste.

Only processes whose job is applying batches call this (``metatrail consume`` and
``metatrail ingest``); the embedded applier runs inside the user's program, whose
collector is not ours to tune.
"""

from __future__ import annotations

import gc

#: Young-generation threshold: one batch's short-lived allocations, not 700 of them.
GEN0_THRESHOLD = 50_000


def tune_for_batches() -> None:
    """Freeze what start-up allocated out of every later collection, and collect the
    young generation per batch rather than many times within one."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
