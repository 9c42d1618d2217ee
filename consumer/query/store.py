"""``Store``: the read API of the lineage store. Returns domain objects, never ORM rows.

Every method runs in its own short read transaction and is safe to call from several
threads (the engine pools connections). Raises ``FilterError`` for a malformed filter,
order or cursor, ``NotFoundError`` for an unknown id, ``StoreError`` (or its transient
child) when the database fails.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Column, Connection, Engine, Select, event, false, func, select, type_coerce
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import QueuePool
from sqlalchemy.types import NullType

from metatrail.consumer.query import compare as cmp
from metatrail.consumer.query.compile import ARTIFACT, ENTITIES, Compiler, Entity
from metatrail.consumer.query.convert import metric_points
from metatrail.consumer.query.diff import diff as diff_nodes
from metatrail.consumer.query.diffmodel import Diff
from metatrail.consumer.query.domain import (
    RETIRED_STATES,
    Artifact,
    Comparison,
    Context,
    Edge,
    Execution,
    ExecutionLinks,
    LineageGraph,
    MetricHistoryRow,
    MetricPoint,
    Page,
)
from metatrail.consumer.query.detail import NodeDetail, node_detail
from metatrail.consumer.query.filters import parse_filter
from metatrail.consumer.query.idrefs import context_ref, full_id, lineage_refs, resolve, short_ids
from metatrail.consumer.query.impact import Impact
from metatrail.consumer.query.impact import impact as impact_of
from metatrail.consumer.query.frontier import FrontierNode, frontier
from metatrail.consumer.query.subgraph import edges_among
from metatrail.consumer.query.series import MIN_POINTS, MetricSeries, metric_series, run_executions
from metatrail.consumer.query.links import execution_links
from metatrail.consumer.query.lineage import DEFAULT_LIMIT, DEFAULT_MAX_HOPS, lineage_graph
from metatrail.consumer.query.liveness import DEFAULT_STALE_AFTER, Liveness
from metatrail.consumer.query.raw import TABLES, Raw, build_nodes, load_nodes, utc
from metatrail.consumer.query.paging import SortKey, after, apply_order, decode_cursor, encode_cursor, sort_keys
from metatrail.consumer.store.engine import is_transient, open_existing
from metatrail.consumer.store.models import AppliedEventRow, MetricRow
from metatrail.schemas.errors import FilterError, NotFoundError, StoreError, TransientStoreError

Kind = Literal["artifact", "execution", "context"]
#: Every kind of node, in the order ``get`` looks for an id.
NODE_KINDS: tuple[Kind, ...] = ("artifact", "execution", "context")
#: Largest page ``find`` returns.
MAX_PAGE = 10_000


class Store:
    """Read access to a metatrail store. ``Store.open(url)``; close with ``close()`` or
    use it as a context manager."""

    def __init__(
        self, engine: Engine, *, owns_engine: bool = False, stale_after: timedelta = DEFAULT_STALE_AFTER
    ) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._owns_engine = owns_engine
        #: A RUNNING execution silent for longer is shown as stale (``Execution.stale``).
        self.stale_after = stale_after

    @classmethod
    def open(cls, url: str, *, stale_after: timedelta = DEFAULT_STALE_AFTER) -> Store:
        """The store at ``url`` (SQLAlchemy URL). Blocking: connects once to check that a
        metatrail store is there, and creates nothing. Raises ``StoreNotFoundError`` when
        there is none yet (no file, database or tables), ``ConfigError`` on a bad URL.
        ``stale_after``: see ``Execution.stale``."""
        if make_url_safe(url) == "sqlite-file":
            engine = open_existing(url, poolclass=QueuePool)
            event.listen(engine, "connect", _larger_page_cache)
            engine.dispose()  # the connection that checked the schema lacks the larger cache
        elif url.startswith("sqlite"):
            engine = open_existing(url)
        else:
            # Reads need no transaction (each statement sees committed data) and no
            # liveness ping per checkout: both would add a round trip to every call.
            engine = open_existing(url, isolation_level="AUTOCOMMIT", pool_pre_ping=False)
            if engine.dialect.name == "postgresql":
                event.listen(engine, "connect", _custom_plans)
                engine.dispose()
        return cls(engine, owns_engine=True, stale_after=stale_after)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self, begin: bool = True) -> Iterator[Connection]:
        """One read transaction (a consistent snapshot for the several queries of a call)."""
        try:
            with self.engine.connect() as conn:
                if begin:
                    with conn.begin():
                        yield conn
                else:
                    yield conn
        except SQLAlchemyError as exc:
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            msg = text[0][:500] if text else type(exc).__name__
            if is_transient(exc):
                raise TransientStoreError(f"transient database error: {msg}") from exc
            raise StoreError(f"database error: {msg}") from exc

    @contextmanager
    def _raw(self) -> Iterator[Raw]:
        """A DBAPI cursor for the plain-SQL hot paths. No explicit transaction: each
        statement reads committed data, and apply commits whole batches (nodes with
        their edges), so the few statements of one call agree in practice."""
        with self._read(begin=False) as conn:
            raw = Raw(conn, Liveness.here(self.stale_after))
            try:
                yield raw
            finally:
                raw.close()

    # -- single nodes -------------------------------------------------------------------
    def resolve(self, ref: str, kinds: Sequence[Kind] = NODE_KINDS) -> tuple[Kind, str]:
        """(kind, full id) of the node that ``ref`` names: a full id or an unambiguous
        prefix (at least 4 characters). Raises ``NotFoundError``, or ``AmbiguousIdError``
        listing the candidates."""
        with self._raw() as raw:
            match = resolve(raw, ref, tuple(kinds))
        return match.kind, match.id  # type: ignore[return-value]

    def get(self, node_id: str, kinds: Sequence[Kind] = NODE_KINDS) -> Artifact | Execution | Context:
        """The artifact, execution or context with this id or unambiguous id prefix.
        Raises ``NotFoundError`` or ``AmbiguousIdError``."""
        with self._raw() as raw:
            match = resolve(raw, node_id, tuple(kinds))
            found = load_nodes(raw, match.kind, [match.id])
        if match.id not in found:  # deleted between the two statements
            raise NotFoundError(f"no {match.kind} with id {match.id!r}")
        return found[match.id]  # type: ignore[no-any-return]

    def detail(self, node_id: str, kinds: Sequence[Kind] = NODE_KINDS) -> NodeDetail:
        """The node (id or unambiguous prefix) with its contexts, producing and consuming
        executions, inputs and outputs, parent and child contexts (see
        :mod:`metatrail.consumer.query.detail`). Raises ``NotFoundError`` / ``AmbiguousIdError``."""
        with self._raw() as raw:
            match = resolve(raw, node_id, tuple(kinds))
            found = load_nodes(raw, match.kind, [match.id])
            if match.id not in found:
                raise NotFoundError(f"no {match.kind} with id {match.id!r}")
            return node_detail(raw, found[match.id])
    def get_many(self, kind: Kind, ids: Sequence[str]) -> dict[str, Any]:
        """id -> node of ``kind`` for the full ids given that exist (no prefixes)."""
        with self._raw() as raw:
            return load_nodes(raw, kind, list(ids))

    def execution_links(self, execution_ids: Sequence[str]) -> dict[str, ExecutionLinks]:
        """execution id -> its INPUT / OUTPUT edges and contexts, for every id given."""
        with self._raw() as raw:
            return execution_links(raw, list(execution_ids))

    def artifact(self, artifact_id: str) -> Artifact:
        """The artifact with this id or unambiguous id prefix."""
        return self.get(artifact_id, ("artifact",))  # type: ignore[return-value]

    def short_ids(self, ids: Collection[str]) -> dict[str, str]:
        """id -> its short form for display: the shortest prefix, at least 8 characters,
        that names it alone in the store now (like git's abbreviated hashes), so that
        ``get`` and ``resolve`` take it back. A few index probes per id (one statement
        per 100 ids)."""
        if not ids:
            return {}
        with self._raw() as raw:
            return short_ids(raw, ids)

    # -- filtered lists -----------------------------------------------------------------
    def _filter_ids(self, filter: str | None) -> tuple[tuple[str, str], ...]:
        """The id prefixes in a filter's lineage predicates, resolved (no query unless the
        filter has such a predicate with a prefix)."""
        if not filter or "_of" not in filter:
            return ()
        with self._raw() as raw:
            return lineage_refs(raw, filter)

    def find(
        self,
        kind: Kind,
        filter: str | None = None,
        *,
        order_by: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
        include_retired: bool = False,
    ) -> Page[Any]:
        """One page of artifacts, executions or contexts matching ``filter`` (see
        :mod:`metatrail.consumer.query.compile` for the language, MLMD's ``filter_query``
        syntax included), ordered by ``order_by``
        (``"created_at"``, ``"name desc"``, ``"-properties.accuracy"``; default
        ``created_at``), then id. Placeholders and DELETED/ABANDONED artifacts are left
        out unless ``include_retired``. Pass ``page.next_cursor`` back for the next page.
        ``upstream_of`` / ``downstream_of`` take an id or an unambiguous prefix."""
        if not 1 <= limit <= MAX_PAGE:
            raise FilterError(f"expected a page size between 1 and {MAX_PAGE}, got {limit}", param="limit")
        page = _page_query(kind, filter, order_by, include_retired, limit, self.dialect, self._filter_ids(filter))
        query = page.query
        if cursor:
            values, last_id = decode_cursor(cursor, page.keys)
            query = query.where(after(list(page.keys), values, last_id, _entity(kind).table))
        with self._read() as conn:
            # SQLAlchemy binds; the driver's own cursor hands back plain tuples (no Row
            # per node: the builder reads each row once, by position).
            with conn.execute(query) as result:
                rows = result.cursor.fetchall()
            more = len(rows) > limit
            rows = rows[:limit]
            raw = Raw(conn, Liveness.here(self.stale_after))
            try:
                items = build_nodes(raw, kind, rows)
            finally:
                raw.close()
        next_cursor = None
        if more and rows:
            last = rows[-1]
            values = [utc(last[i]) if k.is_time else last[i] for i, k in zip(page.key_columns, page.keys)]
            next_cursor = encode_cursor(values, last[0])
        return Page(items=tuple(items), next_cursor=next_cursor)

    def artifacts(self, filter: str | None = None, **kwargs: Any) -> Page[Artifact]:
        return self.find("artifact", filter, **kwargs)

    def executions(self, filter: str | None = None, **kwargs: Any) -> Page[Execution]:
        return self.find("execution", filter, **kwargs)

    def contexts(self, filter: str | None = None, **kwargs: Any) -> Page[Context]:
        return self.find("context", filter, **kwargs)

    def count(self, kind: Kind, filter: str | None = None, *, include_retired: bool = False,
              limit: int | None = None) -> int:
        """How many nodes match (same rules as ``find``); with ``limit``, counting stops
        there (the answer is at most ``limit``: a table that shows "10,000+" reads that
        many index entries, not the whole table)."""
        entity = _entity(kind)
        conditions = _conditions(entity, filter, include_retired, self.dialect, self._filter_ids(filter))
        if limit is None:
            query = select(func.count()).select_from(entity.table).where(*conditions)
        else:
            capped = select(entity.table.c.id).where(*conditions).limit(limit).subquery()
            query = select(func.count()).select_from(capped)
        with self._read() as conn:
            return int(conn.execute(query).scalar_one())

    # -- lineage ------------------------------------------------------------------------
    def lineage(
        self,
        node_id: str,
        direction: Literal["upstream", "downstream", "both"] = "upstream",
        *,
        max_hops: int = DEFAULT_MAX_HOPS,
        types: Collection[str] | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> LineageGraph:
        """The lineage subgraph around an artifact or execution.

        ``upstream``: what it was made from; ``downstream``: what was made from it;
        ``both``: the union of the two walks. ``max_hops`` counts edges (artifact ->
        execution is one hop). ``types`` keeps only nodes of those types (the start node
        always stays; edges are kept between kept nodes). At most ``limit`` nodes, nearest
        first. ``truncated`` is True when a hop or node limit left reachable nodes out.
        Placeholders and retired artifacts are included: lineage is history.
        """
        if direction not in ("upstream", "downstream", "both"):
            raise FilterError(f"direction must be upstream, downstream or both, got {direction!r}")
        _check_walk(max_hops, limit)
        with self._raw() as raw:
            start = full_id(raw, node_id, ("artifact", "execution"))
            return lineage_graph(raw, start, direction, max_hops, types, limit)

    # -- why different -------------------------------------------------------------------
    def diff(self, a: str, b: str, *, max_hops: int = DEFAULT_MAX_HOPS, limit: int = DEFAULT_LIMIT) -> Diff:
        """Why ``b`` differs from ``a`` (two models or other artifacts, executions or run
        contexts; ids or unambiguous prefixes): both upstream lineages aligned step by
        step, what differs in each aligned pair, the targets' metrics with per-slice
        deltas, and a verdict naming the most upstream change (see
        :mod:`metatrail.consumer.query.diff`). ``max_hops`` and ``limit`` bound each walk
        as in ``lineage``. Raises ``NotFoundError``, ``AmbiguousIdError``, or
        ``FilterError`` for two nodes of different kinds."""
        _check_walk(max_hops, limit)
        with self._raw() as raw:
            return diff_nodes(raw, a, b, max_hops, limit)

    def impact(self, artifact_id: str, *, max_hops: int = DEFAULT_MAX_HOPS, limit: int = DEFAULT_LIMIT) -> Impact:
        """The blast radius of an artifact found bad: everything downstream, grouped by
        type (deployed artifacts and models first), the executions that read it, and the
        registered steps fixed data would start again (see
        :mod:`metatrail.consumer.query.impact`, which also plans a retire). Raises
        ``NotFoundError`` or ``AmbiguousIdError``."""
        _check_walk(max_hops, limit)
        with self._raw() as raw:
            match = resolve(raw, artifact_id, ("artifact",))
            found = load_nodes(raw, "artifact", [match.id])
            if match.id not in found:
                raise NotFoundError(f"no artifact with id {match.id!r}")
            return impact_of(raw, found[match.id], max_hops, limit)
    def frontier(self, graph: LineageGraph) -> tuple[FrontierNode, ...]:
        """For each node of ``graph`` with neighbours outside it, how many upstream and
        downstream (see :mod:`metatrail.consumer.query.frontier`)."""
        with self._raw() as raw:
            return frontier(raw, graph)

    def edges_among(self, artifact_ids: Collection[str], execution_ids: Collection[str]) -> tuple[Edge, ...]:
        """Every lineage edge between the given artifacts and executions (see
        :mod:`metatrail.consumer.query.subgraph`): for a view assembled from several
        lineage answers."""
        with self._raw() as raw:
            return edges_among(raw, artifact_ids, execution_ids)

    # -- warm start ---------------------------------------------------------------------
    def latest(self, artifact_type: str, *, context: str | None = None, where: str | None = None) -> Artifact | None:
        """The newest LIVE artifact of ``artifact_type`` (by created_at, then id), in
        ``context`` (a context id or name) if given, matching the ``where`` filter; None
        when there is none. For warm-starting training from the last model. The context
        may also be given by an unambiguous id prefix."""
        if context is not None:
            with self._raw() as raw:
                context = context_ref(raw, context)
        compiler = Compiler(self.dialect)
        table = ARTIFACT.table
        conds: list[Any] = [table.c.type == artifact_type, table.c.state == "LIVE", table.c.is_placeholder == false()]
        if context is not None:
            q = "context.id = {0} OR context.name = {0}".format(_quote(context))
            conds.append(compiler.compile(parse_filter(q), ARTIFACT))
        if where:
            conds.append(compiler.compile(parse_filter(where), ARTIFACT))
        query = select(table.c.id).where(*conds).order_by(table.c.created_at.desc(), table.c.id.desc()).limit(1)
        with self._read() as conn:
            found = conn.execute(query).scalar()
            if found is None:
                return None
            raw = Raw(conn, Liveness.here(self.stale_after))
            try:
                return load_nodes(raw, "artifact", [found])[found]  # type: ignore[no-any-return]
            finally:
                raw.close()

    def applied(self, event_ids: Collection[str]) -> set[str]:
        """Which of these event ids the store has applied (a consumer of the events topic
        that reads the store, like the OpenLineage forwarder, waits for them)."""
        t = AppliedEventRow.__table__
        found: set[str] = set()
        ids = sorted(set(event_ids))
        with self._read() as conn:
            for start in range(0, len(ids), 900):
                part = ids[start : start + 900]
                found.update(conn.execute(select(t.c.event_id).where(t.c.event_id.in_(part))).scalars())
        return found

    # -- metrics and comparison ---------------------------------------------------------
    def metrics(self, node_id: str, key: str | None = None) -> list[MetricPoint]:
        """Every metric sample of an execution or context (id or unambiguous id prefix),
        by key, step, time."""
        with self._raw() as raw:
            node_id = full_id(raw, node_id, ("execution", "context"))
        t = MetricRow.__table__
        query = select(t).where((t.c.execution_id == node_id) | (t.c.context_id == node_id))
        if key is not None:
            query = query.where(t.c.key == key)
        query = query.order_by(t.c.key, t.c.step, t.c.timestamp, t.c.event_id, t.c.seq)
        with self._read() as conn:
            return metric_points(conn.execute(query))

    def metric_series(self, key: str, *, executions: Sequence[str] = (), contexts: Sequence[str] = (),
                      max_points: int = 1000) -> list[MetricSeries]:
        """Samples of metric ``key`` in step order, one series per execution and per
        context (ids or unambiguous prefixes) that logged it, each downsampled to at most
        ``max_points`` keeping every bucket's extremes. A context stands for its own
        samples and its executions'. Raises ``NotFoundError`` for an unknown id,
        ``FilterError`` for ``max_points`` below 2."""
        if max_points < MIN_POINTS:
            raise FilterError(f"max_points must be at least {MIN_POINTS}, got {max_points}")
        with self._raw() as raw:
            owners: list[tuple[str, str]] = []
            for ref in executions:
                owners.append(("execution", resolve(raw, ref, ("execution",)).id))
            for ref in contexts:
                cid = resolve(raw, ref, ("context",)).id
                owners.append(("context", cid))
                owners.extend(("execution", x) for x in run_executions(raw, cid))
            return metric_series(raw, key, list(dict.fromkeys(owners)), max_points)

    def compare(self, ids: Sequence[str], *, metrics: Collection[str] | None = None) -> Comparison:
        """Params and metrics of runs (contexts) or executions side by side. For a run,
        params are its own properties plus its executions' parameters as
        ``<execution type>.<name>``; metrics its own plus ``<execution type>.<key>``
        (imported TFX and Kubeflow steps are named by component: ``compare.step_label``).
        Ids may be unambiguous prefixes. Raises ``NotFoundError`` for an unknown id."""
        with self._raw() as raw:
            full = [full_id(raw, i, ("context", "execution")) for i in ids]
            return cmp.compare(raw, full, metrics)

    def metric_history(
        self,
        key: str,
        *,
        execution_type: str | None = None,
        context: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        key_like: bool = False,
        limit: int = 10_000,
    ) -> list[MetricHistoryRow]:
        """Samples of a metric across executions over time, oldest first: e.g. the
        per-slice AUC (``key="auc/%"``, ``key_like=True``) of every Evaluator run of a
        pipeline (``context`` id, id prefix or name, matched directly or as a parent)
        since a date."""
        if context is not None:
            with self._raw() as raw:
                context = context_ref(raw, context)
        with self._read() as conn:
            return cmp.metric_history(conn, self.dialect, key, execution_type, context, since, until, key_like, limit)


@dataclass(frozen=True)
class _PageQuery:
    """A page's statement, built once per distinct request (see ``_page_query``)."""

    query: Select[Any]
    keys: tuple[SortKey, ...]
    #: Position in a result row of each sort key's value.
    key_columns: tuple[int, ...]


@functools.lru_cache(maxsize=256)
def _page_query(kind: str, filter: str | None, order_by: str | None, include_retired: bool, limit: int,
                dialect: str, ids: tuple[tuple[str, str], ...] = ()) -> _PageQuery:
    """The statement of a page (without its cursor condition). Cached, because building
    and compiling a filter into a new statement cost more than running it (about 2.5 ms
    of a 2,000-row page on SQLite), and dashboards and scripts repeat their filters; the
    statement is immutable, so threads share it. Raises ``FilterError`` (not cached)."""
    entity = _entity(kind)
    keys = tuple(sort_keys(entity, order_by, dialect))
    table = entity.table
    names = TABLES[kind][1]
    # Columns as the driver returns them (the node builder converts them); a sort key
    # that is one of them is read from there, any other is selected after them.
    cols: list[Any] = [type_coerce(table.c[c], NullType()) for c in names]
    key_columns: list[int] = []
    for k in keys:
        if isinstance(k.expr, Column) and k.expr.table is table and k.expr.name in names:
            key_columns.append(names.index(k.expr.name))
        else:
            key_columns.append(len(cols))
            cols.append(type_coerce(k.expr, NullType()).label(f"sort_{len(key_columns) - 1}"))
    query = select(*cols).where(*_conditions(entity, filter, include_retired, dialect, ids))
    query = apply_order(query, list(keys), table, dialect).limit(limit + 1)
    return _PageQuery(query, keys, tuple(key_columns))


def _check_walk(max_hops: int, limit: int) -> None:
    """A walk's bounds, or ``FilterError`` naming the parameter at fault."""
    if max_hops < 0:
        raise FilterError(f"expected a hop count >= 0, got {max_hops}", param="max_hops")
    if limit < 1:
        raise FilterError(f"expected a node limit >= 1, got {limit}", param="limit")


def _conditions(entity: Entity, filter: str | None, include_retired: bool, dialect: str,
                ids: tuple[tuple[str, str], ...] = ()) -> list[Any]:
    """The WHERE conditions of a filter; ``ids``: its lineage predicates' resolved prefixes."""
    conds: list[Any] = []
    if not include_retired:
        conds.append(entity.table.c.is_placeholder == false())
        if entity is ARTIFACT:
            conds.append(entity.table.c.state.not_in(sorted(RETIRED_STATES)))
    if filter is not None and filter.strip():
        conds.append(Compiler(dialect, dict(ids)).compile(parse_filter(filter), entity))
    return conds


def make_url_safe(url: str) -> str:
    """'sqlite-file' for an SQLite file URL (reads then reuse pooled connections)."""
    if url.startswith("sqlite") and ":memory:" not in url and url.rstrip("/") not in ("sqlite:", "sqlite+pysqlite:"):
        return "sqlite-file"
    return "other"


#: Page cache of each pooled SQLite read connection, KiB. SQLite's default (2 MiB) holds
#: too little of a large store: a query returning thousands of nodes then reads most
#: of their pages from the OS again, a system call each (the 2,000-artifact filter of
#: the query bench: 10 ms with 2 MiB, 7 with 16 MiB or more). Allocated as pages are read.
SQLITE_CACHE_KIB = 32_768


def _larger_page_cache(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def _custom_plans(dbapi_conn: Any, _record: Any) -> None:
    """Every statement planned for its own parameters. psycopg prepares a statement run
    five times, and PostgreSQL then switches to one generic plan made for an average
    owner; metric data is skewed (one run's series holds 100,000 samples, most a few
    hundred), and the generic plans of a history's statements read the whole series where
    the custom ones read an index entry: ``MIN(step)`` of a 100,000-sample series took
    0.3 ms, then 27 ms once generic. Preparing still saves the parse."""
    cursor = dbapi_conn.cursor()
    cursor.execute("SET plan_cache_mode = force_custom_plan")
    cursor.close()
    if not dbapi_conn.autocommit:
        dbapi_conn.commit()  # a SET in a transaction ends with it


def _entity(kind: str) -> Entity:
    try:
        return ENTITIES[kind]
    except KeyError:
        raise FilterError(f"kind must be artifact, execution or context, got {kind!r}") from None


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


__all__ = ["Store"]
