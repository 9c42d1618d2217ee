"""Recursive CTEs over the edge table: which artifacts a node reaches, and at what distance.

The CTE walks artifact to artifact through one execution per step (two edges), so each
recursive step is two index lookups with no OR in the join: upstream, ``artifact <-OUTPUT-
execution <-INPUT- artifact`` (``mt_edges`` index on artifact_id, then the primary key on
execution_id); downstream the mirror. Executions are recovered from the edges of the
reached artifacts. Distances count edges. The same SQL runs on SQLite, PostgreSQL and
MariaDB (casts keep the seed and recursive column types equal, which PostgreSQL and
MariaDB require).

This SQLAlchemy form serves the filter predicates ``upstream_of`` / ``downstream_of``
(it nests inside a filtered query); ``raw.walk_edges`` is the same walk as plain SQL for
``Store.lineage``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import CTE, Integer, String, and_, cast, literal, select, union

from metatrail.consumer.store.models import EdgeRow
from metatrail.consumer.store.types import ID_LEN

EDGES = EdgeRow.__table__

#: (edge direction from a reached artifact to the next execution, from that execution to
#: the next artifact), per traversal direction.
STEP = {"upstream": ("OUTPUT", "INPUT"), "downstream": ("INPUT", "OUTPUT")}


def artifact_reach(start_id: str, direction: str, max_depth: int, name: str) -> CTE:
    """CTE ``(id, depth)`` of artifacts reached from ``start_id`` (an artifact or an
    execution — the seed covers both) within ``max_depth`` edges, one row per distinct
    (artifact, depth). An execution start id appears as a harmless depth-0 row."""
    first, second = STEP[direction]
    seed_self = select(
        cast(literal(start_id), String(ID_LEN)).label("id"), cast(literal(0), Integer).label("depth")
    )
    seed_exec = select(
        EDGES.c.artifact_id.label("id"), cast(literal(1), Integer).label("depth")
    ).where(EDGES.c.execution_id == start_id, EDGES.c.direction == second)
    seeds = union(seed_self, seed_exec).subquery(f"{name}_seed")
    cte = select(seeds.c.id, seeds.c.depth).cte(name, recursive=True)
    e1 = EDGES.alias(f"{name}_e1")
    e2 = EDGES.alias(f"{name}_e2")
    step = (
        select(e2.c.artifact_id, cast(cte.c.depth + 2, Integer))
        .select_from(
            cte.join(e1, and_(e1.c.artifact_id == cte.c.id, e1.c.direction == first)).join(
                e2, and_(e2.c.execution_id == e1.c.execution_id, e2.c.direction == second)
            )
        )
        .where(cte.c.depth + 2 <= max_depth)
    )
    return cte.union(step)


def executions_next_to(cte: CTE, direction: str, max_artifact_depth: int | None = None) -> Any:
    """SELECT of the execution ids one edge beyond the reached artifacts (producers when
    upstream, consumers when downstream), optionally only beyond artifacts at depth <=
    ``max_artifact_depth``."""
    first, _ = STEP[direction]
    edge = EDGES.alias(f"{cte.name}_x")
    sub = select(cte.c.id)
    if max_artifact_depth is not None:
        sub = sub.where(cte.c.depth <= max_artifact_depth)
    return select(edge.c.execution_id).where(edge.c.direction == first, edge.c.artifact_id.in_(sub))
