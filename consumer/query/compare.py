"""Runs side by side, and a metric's history across runs."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, or_, select

from metatrail.consumer.query import sqlparts as sp
from metatrail.consumer.query.compile import CONTEXT, EXECUTION
from metatrail.consumer.query.convert import metric_value
from metatrail.consumer.query.domain import Comparison, Context, Execution, MetricHistoryRow, RunColumn
from metatrail.consumer.query.raw import Raw, load_nodes
from metatrail.consumer.store import models as m
from metatrail.consumer.store.batching import chunks
from metatrail.schemas.errors import FilterError, NotFoundError

METRICS = m.MetricRow.__table__
ASSOC = m.AssociationRow.__table__
PARENTS = m.ParentContextRow.__table__


def last_values(raw: Raw, column: str, ids: list[str]) -> dict[str, dict[str, float]]:
    """owner id -> key -> last value (highest step, then latest time, then event order)."""
    out: dict[str, dict[str, float]] = {}
    for part in chunks(ids, 900):
        test, args = raw.one_of(part)
        sql = (f"SELECT {column}, metric_key, value, nonfinite FROM mt_metrics WHERE {column} {test} "
               f"ORDER BY {column}, metric_key, CASE WHEN step IS NULL THEN 0 ELSE 1 END, step, timestamp, event_id, seq")
        for owner, key, value, nonfinite in raw.rows(sql.replace("metric_key", raw.quote("key")), args):
            out.setdefault(owner, {})[key] = metric_value(value, nonfinite)
    return out


def _run_executions(raw: Raw, context_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in chunks(context_ids, 900):
        test, args = raw.one_of(part)
        for cid, xid in sorted(raw.rows(f"SELECT context_id, execution_id FROM mt_associations WHERE context_id {test}",
                                        args)):
            out.setdefault(cid, []).append(xid)
    return out


def step_label(ex: Execution) -> str:
    """How a run's comparison names an execution's parameters and metrics: its type.

    Imported executions follow their orchestrator's conventions: TFX (and other MLMD
    writers) type an execution by its component's class path
    (``tfx.components.trainer.component.Trainer``), shown as the class name (``Trainer``);
    Kubeflow Pipelines v2 types every task ``system.ContainerExecution``, so its tasks are
    told apart by their display name (or the execution's name)."""
    kind = ex.type or "execution"
    if ex.mlmd_id is None or "." not in kind:
        return kind
    if kind.startswith("system."):
        task = ex.custom_properties.get("display_name") or ex.custom_properties.get("task_name") or ex.name
        return str(task) if task else kind
    last = kind.rsplit(".", 1)[1]
    return last if last[:1].isupper() else kind


def compare(raw: Raw, ids: list[str], wanted: Collection[str] | None) -> Comparison:
    if not ids:
        raise FilterError("compare needs at least one run or execution id")
    contexts = load_nodes(raw, "context", ids)
    executions = load_nodes(raw, "execution", [i for i in ids if i not in contexts])
    missing = [i for i in ids if i not in contexts and i not in executions]
    if missing:
        raise NotFoundError(f"no run (context) or execution with id {missing[0]!r}")
    members = _run_executions(raw, [i for i in ids if i in contexts])
    member_ids = sorted({e for es in members.values() for e in es})
    member_nodes = load_nodes(raw, "execution", member_ids)
    exec_metrics = last_values(raw, "execution_id", sorted(set(member_ids) | set(executions)))
    ctx_metrics = last_values(raw, "context_id", [i for i in ids if i in contexts])

    columns: list[RunColumn] = []
    params: list[dict[str, Any]] = []
    metrics: list[dict[str, float]] = []
    codes: list[dict[str, Any]] = []
    environments: list[dict[str, Any]] = []
    for node_id in ids:
        node: Context | Execution = contexts.get(node_id) or executions[node_id]
        runs = [member_nodes[x] for x in members.get(node_id, []) if x in member_nodes]
        columns.append(_column(node, runs))
        p: dict[str, Any] = {}
        mt: dict[str, float] = {}
        code: dict[str, Any] = {}
        env: dict[str, Any] = {}
        for prefix, ex in _executions_of(node, members, member_nodes):
            code.update(_flat(ex.code_version, prefix))
            env.update(_flat(ex.environment, prefix))
        codes.append(code)
        environments.append(env)
        if isinstance(node, Context):
            p.update(node.properties)
            p.update({f"custom.{k}": v for k, v in node.custom_properties.items()})
            mt.update(ctx_metrics.get(node_id, {}))
            for ex_id in members.get(node_id, []):
                ex = member_nodes.get(ex_id)
                prefix = (step_label(ex) if ex is not None else "execution") + "."
                if ex is not None:
                    p.update({prefix + k: v for k, v in ex.properties.items()})
                mt.update({prefix + k: v for k, v in exec_metrics.get(ex_id, {}).items()})
        else:
            p.update(node.properties)
            p.update({f"custom.{k}": v for k, v in node.custom_properties.items()})
            mt.update(exec_metrics.get(node_id, {}))
        params.append(p)
        metrics.append(mt)

    def keep(key: str) -> bool:
        return wanted is None or key in wanted or key.split(".", 1)[-1] in wanted

    param_keys = sorted({k for p in params for k in p})
    metric_keys = sorted({k for mt in metrics for k in mt if keep(k)})
    return Comparison(
        columns=tuple(columns),
        params={k: tuple(p.get(k) for p in params) for k in param_keys},
        metrics={k: tuple(mt.get(k) for mt in metrics) for k in metric_keys},
        code=_side_by_side(codes),
        environment=_side_by_side(environments),
    )


def _column(node: Context | Execution, members: list[Execution]) -> RunColumn:
    """The column heading of a compared node, with its timing (see ``RunColumn``)."""
    if isinstance(node, Execution):
        start, end, state = node.started_at, node.ended_at, node.state
    elif node.started_at is not None:  # opened by run(): its own times (no end while open)
        start, end, state = node.started_at, node.ended_at, node.status
    else:
        starts = [x.started_at for x in members if x.started_at is not None]
        ends = [x.ended_at for x in members if x.ended_at is not None]
        start, end, state = min(starts, default=None), max(ends, default=None), node.status
    duration = (end - start).total_seconds() if start is not None and end is not None else None
    return RunColumn(node.id, node.kind, node.type, node.name, node.created_at, start, end, duration, state)


def _executions_of(node: Context | Execution, members: dict[str, list[str]],
                   member_nodes: dict[str, Execution]) -> list[tuple[str, Execution]]:
    """(key prefix, execution) whose code and environment a column shows."""
    if isinstance(node, Execution):
        return [("", node)]
    found = [member_nodes[x] for x in members.get(node.id, []) if x in member_nodes]
    return [((ex.type or "execution") + ".", ex) for ex in found]


def _flat(value: dict[str, Any] | None, prefix: str) -> dict[str, Any]:
    """A code version or environment as flat keys (``packages.numpy``); empty values left out."""
    out: dict[str, Any] = {}
    for key, item in (value or {}).items():
        if isinstance(item, dict):
            out.update(_flat(item, f"{prefix}{key}."))
        elif item is not None:
            out[prefix + key] = item
    return out


def _side_by_side(cells: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {k: tuple(c.get(k) for c in cells) for k in sorted({k for c in cells for k in c})}


def metric_history(
    conn: Connection,
    dialect: str,
    key: str,
    execution_type: str | None,
    context: str | None,
    since: datetime | None,
    until: datetime | None,
    key_like: bool,
    limit: int,
) -> list[MetricHistoryRow]:
    ex = EXECUTION.table
    ctx = CONTEXT.table
    key_cond = sp.like(METRICS.c.key, key, dialect) if key_like else sp.str_eq(METRICS.c.key, key, dialect)
    if key_like:
        sp.check_like_pattern(key, 0)
    query = (
        select(METRICS.c.key, METRICS.c.value, METRICS.c.nonfinite, METRICS.c.step, METRICS.c.timestamp,
               METRICS.c.execution_id, ex.c.type.label("ex_type"), ex.c.name.label("ex_name"))
        .select_from(METRICS.join(ex, ex.c.id == METRICS.c.execution_id))
        .where(key_cond)
    )
    if execution_type is not None:
        query = query.where(ex.c.type == execution_type)
    if since is not None:
        query = query.where(METRICS.c.timestamp >= since)
    if until is not None:
        query = query.where(METRICS.c.timestamp < until)
    run_col = None
    if context is not None:
        run = ctx.alias("run")
        parent = ctx.alias("parent")
        link = PARENTS.alias("link")
        direct = or_(run.c.id == context, sp.str_eq(run.c.name, context, dialect))
        via_parent = select(link.c.context_id).select_from(link.join(parent, parent.c.id == link.c.parent_id)).where(
            or_(parent.c.id == context, sp.str_eq(parent.c.name, context, dialect))
        )
        query = (
            query.join(ASSOC, ASSOC.c.execution_id == METRICS.c.execution_id)
            .join(run, run.c.id == ASSOC.c.context_id)
            .where(or_(direct, run.c.id.in_(via_parent)))
            .add_columns(run.c.id.label("run_id"), run.c.name.label("run_name"))
        )
        run_col = True
    query = query.order_by(METRICS.c.timestamp, METRICS.c.execution_id, METRICS.c.key, METRICS.c.step,
                           METRICS.c.event_id, METRICS.c.seq).limit(limit)
    rows = []
    seen: dict[tuple[str, int], int] = {}
    for r in conn.execute(query.add_columns(METRICS.c.event_id, METRICS.c.seq)):
        sample = (r.event_id, r.seq)
        if sample in seen:  # the execution is in the pipeline and in a run: report the run
            if run_col and r.run_id != context and r.run_name != context:
                rows[seen[sample]] = _history_row(r, run_col)
            continue
        seen[sample] = len(rows)
        rows.append(_history_row(r, run_col))
    return rows


def _history_row(r: Any, run_col: bool | None) -> MetricHistoryRow:
    return MetricHistoryRow(
        key=r.key, value=metric_value(r.value, r.nonfinite), step=r.step, timestamp=r.timestamp,
        execution_id=r.execution_id, execution_type=r.ex_type, execution_name=r.ex_name,
        context_id=r.run_id if run_col else None, context_name=r.run_name if run_col else None,
    )


__all__ = ["compare", "last_values", "metric_history"]
