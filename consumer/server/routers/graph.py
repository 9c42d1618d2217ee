"""``/lineage``, ``/compare``, ``/diff``, ``/impact`` and ``/metrics/history``: the questions a
team asks of the graph."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from metatrail.consumer.query.lineage import DEFAULT_MAX_HOPS
from metatrail.consumer.server import http_models as hm
from metatrail.consumer.server.dependencies import StoreDep, require
from metatrail.consumer.server.errors import ApiError
from metatrail.consumer.server.responses import JSONBody, json_body

router = APIRouter(dependencies=[Depends(require("read"))])

_DIRECTIONS = {"up": "upstream", "down": "downstream", "both": "both",
               "upstream": "upstream", "downstream": "downstream"}
#: Most nodes a lineage answer holds; most runs compared; most series of a history.
MAX_LINEAGE_NODES = 10_000
MAX_COMPARE = 50
MAX_OWNERS = 50


def _ids(text: str | None, what: str, limit: int) -> list[str]:
    ids = [part.strip() for part in (text or "").split(",") if part.strip()]
    if len(ids) > limit:
        raise ApiError(400, "bad_request", f"{what}: at most {limit} ids, got {len(ids)}")
    return ids


@router.get("/lineage", response_model=hm.LineageOut, summary="Lineage around a node")
def lineage(
    store: StoreDep,
    node: Annotated[str, Query(min_length=1, max_length=64, description="Artifact or execution id (or prefix).")],
    direction: Annotated[Literal["up", "down", "both", "upstream", "downstream"], Query()] = "up",
    depth: Annotated[int, Query(ge=0, le=100, description="Hops (edges) from the node.")] = 3,
    max_nodes: Annotated[int, Query(ge=1, le=MAX_LINEAGE_NODES, description="Most nodes answered, nearest first.")] = 500,
    type: Annotated[list[str] | None, Query(max_length=50, description="Keep only nodes of these types.")] = None,
) -> JSONBody:
    """Nodes and edges within `depth` hops, at most `max_nodes` (nearest first).
    `truncated` says whether reachable nodes were left out; `frontier` lists, per node,
    how many neighbours each way are not in the answer, so a client expands one node at a
    time (a lineage call centred on it)."""
    kind, start = store.resolve(node, ("artifact", "execution"))
    walk = _DIRECTIONS[direction]
    graph = store.lineage(start, walk, max_hops=depth, types=type or None, limit=max_nodes)  # type: ignore[arg-type]
    body = graph.to_json()
    body.update(start=start, direction=walk, depth=depth, max_nodes=max_nodes,
                frontier=[f.to_json() for f in store.frontier(graph)])
    return json_body(body)


@router.get("/compare", response_model=hm.CompareOut, summary="Runs side by side")
def compare(
    store: StoreDep,
    runs: Annotated[str, Query(min_length=1, max_length=4000, description="Comma-separated run (context) or execution ids or prefixes.")],
    metric: Annotated[list[str] | None, Query(max_length=100, description="Only these metrics.")] = None,
) -> JSONBody:
    """Params, metrics, code version and environment of 1 to 50 runs or executions side
    by side; each row says whether the columns differ."""
    ids = [store.resolve(ref, ("context", "execution"))[1] for ref in _ids(runs, "runs", MAX_COMPARE)]
    if not ids:
        raise ApiError(400, "bad_request", "runs: give at least one run or execution id")
    result = store.compare(ids, metrics=metric or None)
    data = result.to_json()
    rows: list[dict[str, Any]] = []
    for section in result.SECTIONS:
        for key, values in data[section].items():
            rows.append({"section": section, "key": key, "values": values,
                         "differs": any(v != values[0] for v in values[1:])})
    return json_body({"columns": data["columns"], "rows": rows})


@router.get("/diff", response_model=hm.DiffOut, summary="Why two models (or runs) differ")
def diff(
    store: StoreDep,
    a: Annotated[str, Query(min_length=1, max_length=64, description="A: a model (any artifact), execution or run id, or prefix.")],
    b: Annotated[str, Query(min_length=1, max_length=64, description="B: one of the same kind.")],
    depth: Annotated[int, Query(ge=0, le=100, description="Hop limit of each lineage walk (edges).")] = DEFAULT_MAX_HOPS,
) -> JSONBody:
    """Both upstream lineages aligned step by step, what differs in each aligned pair
    (inputs, parameters, code, environment, cache origin, properties), the targets' metrics
    side by side with per-slice deltas (largest drop first), and a verdict naming the most
    upstream change: what `metatrail diff A B --json` prints. Two nodes of different kinds
    are a 400."""
    return json_body(store.diff(a, b, max_hops=depth).to_json())


@router.get("/impact", response_model=hm.ImpactOut, summary="What a bad artifact touched")
def impact(
    store: StoreDep,
    artifact: Annotated[str, Query(min_length=1, max_length=64, description="The artifact found bad (id or prefix).")],
    depth: Annotated[int, Query(ge=0, le=100, description="Hop limit of the walk downstream (edges).")] = DEFAULT_MAX_HOPS,
) -> JSONBody:
    """Everything downstream of `artifact` grouped by type (deployed artifacts and models
    first), the executions that read it, and the registered steps fixed data would start
    again: what `metatrail impact ID --json` prints. Retiring is a write: the CLI's
    `--retire`, or `POST /artifacts/{id}/retire` per artifact."""
    return json_body(store.impact(artifact, max_hops=depth).to_json())


@router.get("/metrics/history", response_model=hm.MetricHistoryOut, summary="A metric over steps, downsampled")
def metric_history(
    store: StoreDep,
    key: Annotated[str, Query(min_length=1, max_length=255, description="Metric key, e.g. loss.")],
    execution: Annotated[str | None, Query(max_length=4000, description="Comma-separated execution ids.")] = None,
    context: Annotated[str | None, Query(max_length=4000, description="Comma-separated run (context) ids: their own samples and their executions'.")] = None,
    max_points: Annotated[int, Query(ge=2, le=100_000, description="Most points per series.")] = 1000,
) -> JSONBody:
    """Samples of `key` in step order, one series per execution (and per run that logged
    it itself), each cut to at most `max_points` keeping every bucket's minimum and maximum
    so spikes survive."""
    executions = _ids(execution, "execution", MAX_OWNERS)
    contexts = _ids(context, "context", MAX_OWNERS)
    if not executions and not contexts:
        raise ApiError(400, "bad_request", "give execution=ID[,ID...] or context=ID[,ID...]")
    series = store.metric_series(key, executions=executions, contexts=contexts, max_points=max_points)
    return json_body({"key": key, "max_points": max_points, "series": [s.to_json() for s in series]})
