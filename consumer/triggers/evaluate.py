"""Trigger evaluation: registered steps against the artifacts a batch made LIVE.

Runs inside the apply transaction (``evaluate_triggers(session, report)``), so a trigger
row exists if and only if the batch that caused it committed. Re-applying a batch, two
consumers applying overlapping batches, or a replay write the same rows again, and the
trigger outbox's key (the trigger id = hash(step, input ids)) makes that a no-op.

Policies (``StepRegistered.policy``):

``each``
    Every new input set runs: for each new artifact fitting slot ``k``, the set is that
    artifact in ``k`` and the newest fitting artifact in every other slot.
``latest``
    A burst coalesces into one run on the newest inputs: the step's pending row
    (``mt_step_pending``) is replaced by the newest input set; the relay turns it into an
    outbox row when the step has no trigger in flight (see :mod:`metatrail.consumer.triggers.relay`).
``all_new``
    Airflow's rule: a run when every slot has an artifact newer than the one the step's
    last trigger used (the first run needs one artifact per slot).

A step triggers only on artifacts that become LIVE after it is registered (no backfill),
and never on the outputs of its own triggered runs (a Dataset -> Dataset step would
otherwise trigger itself forever).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from metatrail.consumer.store.models import StepPendingRow, StepRow, TriggerOutboxRow
from metatrail.consumer.triggers import candidates
from metatrail.consumer.triggers.sql import insert_ignore, upsert
from metatrail.schemas.errors import FilterError
from metatrail.schemas.events import StepInput
from metatrail.schemas.ids import trigger_id

log = logging.getLogger(__name__)


class HasLiveArtifacts(Protocol):
    """What evaluation reads of an apply report."""

    @property
    def live_artifact_ids(self) -> Sequence[str]: ...


def _slots(step: StepRow) -> dict[str, StepInput]:
    return {name: StepInput.model_validate(raw) for name, raw in (step.inputs or {}).items()}


def _trigger_of(step: StepRow, inputs: dict[str, str]) -> str:
    return str(trigger_id(uuid.UUID(step.id), {k: uuid.UUID(v) for k, v in inputs.items()}))


def request_trigger(session: Session, step: StepRow, inputs: dict[str, str]) -> bool:
    """Write an outbox row for ``step`` on ``inputs``; False when it already exists."""
    row = {
        "trigger_id": _trigger_of(step, inputs),
        "step_id": step.id,
        "step_name": step.name,
        "inputs": dict(inputs),
        "created_at": datetime.now(timezone.utc),
        "sent_at": None,
    }
    return insert_ignore(session, TriggerOutboxRow.__table__, row)  # type: ignore[arg-type]


def _newest_set(session: Session, step: StepRow, slots: dict[str, StepInput]) -> dict[str, str] | None:
    chosen: dict[str, str] = {}
    for name, slot in slots.items():
        row = candidates.newest(session, slot, step.pipeline, step.id)
        if row is None:
            return None
        chosen[name] = row.id
    return chosen


def _each(session: Session, step: StepRow, slots: dict[str, StepInput], ids: Sequence[str]) -> int:
    written = 0
    newest: dict[str, str | None] = {}
    for name, slot in slots.items():
        for art in candidates.matching(session, slot, step.pipeline, ids, step.id):
            inputs: dict[str, str] = {name: art.id}
            for other, other_slot in slots.items():
                if other == name:
                    continue
                if other not in newest:
                    row = candidates.newest(session, other_slot, step.pipeline, step.id)
                    newest[other] = row.id if row is not None else None
                chosen = newest[other]
                if chosen is None:
                    break
                inputs[other] = chosen
            else:
                written += request_trigger(session, step, inputs)
    return written


def _latest(session: Session, step: StepRow, slots: dict[str, StepInput]) -> int:
    inputs = _newest_set(session, step, slots)
    if inputs is None:
        return 0
    row = {
        "step_id": step.id,
        "trigger_id": _trigger_of(step, inputs),
        "inputs": inputs,
        "updated_at": datetime.now(timezone.utc),
    }
    upsert(session, StepPendingRow.__table__, row, key=["step_id"])  # type: ignore[arg-type]
    return 1


def _all_new(session: Session, step: StepRow, slots: dict[str, StepInput]) -> int:
    inputs = _newest_set(session, step, slots)
    if inputs is None:
        return 0
    last = session.scalars(
        select(TriggerOutboxRow)
        .where(TriggerOutboxRow.step_id == step.id)
        .order_by(TriggerOutboxRow.created_at.desc())
        .limit(1)
    ).first()
    if last is not None:
        used = {k: v for k, v in (last.inputs or {}).items() if k in inputs}
        times = candidates.created_at_of(session, [*used.values(), *inputs.values()])
        for name, new_id in inputs.items():
            old_id = used.get(name)
            if old_id is None:
                continue
            if new_id == old_id:
                return 0
            new_at, old_at = times.get(new_id), times.get(old_id)
            if new_at is not None and old_at is not None and new_at < old_at:
                return 0
    return int(request_trigger(session, step, inputs))


def _evaluate_step(session: Session, step: StepRow, slots: dict[str, StepInput], ids: Sequence[str]) -> int:
    if not any(candidates.matching(session, s, step.pipeline, ids, step.id) for s in slots.values()):
        return 0
    if step.policy == "latest":
        return _latest(session, step, slots)
    if step.policy == "all_new":
        return _all_new(session, step, slots)
    return _each(session, step, slots, ids)


def evaluate_triggers(session: Session, report: HasLiveArtifacts) -> int:
    """Evaluate every registered step against ``report.live_artifact_ids``.

    Call inside the apply transaction, after the batch's effects are written (flushed).
    Returns how many trigger rows (outbox rows, or pending rows of ``latest`` steps) were
    written. Idempotent. Raises what the session raises (the apply scope maps it).
    """
    ids = sorted({str(i) for i in report.live_artifact_ids})
    if not ids:
        return 0
    session.flush()
    steps = list(session.scalars(select(StepRow).order_by(StepRow.id)))
    if not steps:
        return 0
    new_types = set(
        session.scalars(
            select(candidates.ArtifactRow.type).where(candidates.ArtifactRow.id.in_(ids)).distinct()
        )
    )
    written = 0
    for step in steps:
        slots = _slots(step)
        if not slots or not new_types & {s.type for s in slots.values()}:
            continue
        try:
            written += _evaluate_step(session, step, slots, ids)
        except FilterError as exc:  # a bad filter must not stop the batch (rule 5)
            log.error("step %s (%s): input filter does not compile, not triggered: %s", step.name, step.id, exc)
    if written:
        log.debug("trigger evaluation wrote %d row(s) for %d new artifact(s)", written, len(ids))
    return written
