"""Compile a filter AST into a SQLAlchemy boolean expression over one entity's table.

Every value becomes a bound parameter; field names are checked against a fixed list, so
nothing the user typed is ever spliced into SQL text. Semantics (the same on every
backend):

* columns: ``id type name uri state version digest`` (artifacts), ``id type name state
  fingerprint`` (executions), ``id type name`` (contexts), and the times ``created_at``,
  ``updated_at`` (plus ``started_at``, ``ended_at`` for executions) compared with ISO 8601
  strings (a naive time means UTC). Strings compare exactly and case-sensitively.
* ``properties.<key>`` / ``custom_properties.<key>`` (``parameters.<key>`` is an alias of
  ``properties.<key>`` on executions): a string value compares strings, a number numbers
  (ints and floats alike), TRUE/FALSE booleans; a property of another type never matches.
  ``!=``, ``NOT IN`` and ``NOT LIKE`` hold when the property exists and does not match;
  ``IS NULL`` when it does not exist.
* ``context.<field>``: the node belongs to some context matching ``<field>`` (any context
  field, properties included). On contexts it means a parent context.
* ``upstream_of('<id>'[, hops])`` / ``downstream_of(...)``: reachable through lineage edges
  from the node (itself excluded), for artifacts and executions.
* MLMD's ``filter_query`` syntax (``contexts_a.name``, ``properties.span.int_value``,
  ``state = LIVE``, ``create_time_since_epoch``...): a filter that uses any of it has MLMD's
  meaning as a whole (:mod:`metatrail.consumer.query.mlmd_syntax`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import ColumnElement, FromClause, String, Table, and_, false, literal, not_, or_, select, type_coerce

from metatrail.consumer.query import sqlparts as sp
from metatrail.consumer.query.filters import And, Compare, Expr, LineageOf, Not, Or
from metatrail.consumer.query.mlmd_syntax import ALIAS, Scope, needs_joins, node_fields, uses_mlmd_syntax
from metatrail.consumer.query.mlmd_syntax import compare as mlmd_compare
from metatrail.consumer.query.reach import artifact_reach, executions_next_to
from metatrail.consumer.store import models as m
from metatrail.consumer.store.models import STRING_KEY_LEN
from metatrail.schemas.errors import FilterError

#: Hop limit of upstream_of/downstream_of when the filter gives none.
DEFAULT_PREDICATE_HOPS = 10_000


@dataclass(frozen=True)
class Entity:
    kind: str
    table: Table
    props: Table
    string_columns: frozenset[str]
    time_columns: frozenset[str]
    #: (membership table, its column pointing at this node, its column pointing at the context)
    membership: tuple[Table, str, str]

    @property
    def fields(self) -> list[str]:
        return sorted(self.string_columns | self.time_columns)


ARTIFACT = Entity(
    "artifact",
    m.ArtifactRow.__table__,  # type: ignore[arg-type]
    m.ArtifactPropertyRow.__table__,  # type: ignore[arg-type]
    frozenset({"id", "type", "name", "uri", "state", "version", "digest", "external_id"}),
    frozenset({"created_at", "updated_at"}),
    (m.AttributionRow.__table__, "artifact_id", "context_id"),  # type: ignore[arg-type]
)
EXECUTION = Entity(
    "execution",
    m.ExecutionRow.__table__,  # type: ignore[arg-type]
    m.ExecutionPropertyRow.__table__,  # type: ignore[arg-type]
    frozenset({"id", "type", "name", "state", "fingerprint", "cached_from", "trigger_id", "external_id"}),
    frozenset({"created_at", "updated_at", "started_at", "ended_at"}),
    (m.AssociationRow.__table__, "execution_id", "context_id"),  # type: ignore[arg-type]
)
CONTEXT = Entity(
    "context",
    m.ContextRow.__table__,  # type: ignore[arg-type]
    m.ContextPropertyRow.__table__,  # type: ignore[arg-type]
    frozenset({"id", "type", "name", "external_id"}),
    frozenset({"created_at", "updated_at"}),
    (m.ParentContextRow.__table__, "context_id", "parent_id"),  # type: ignore[arg-type]
)
ENTITIES = {"artifact": ARTIFACT, "execution": EXECUTION, "context": CONTEXT}
PROPERTY_HEADS = {"properties": False, "custom_properties": True, "parameters": False}
#: Operators that hold on one matching property row (so they can share one lookup).
POSITIVE_OPS = frozenset({"=", "IN", "LIKE", "<", "<=", ">", ">="})


def parse_time(value: object, pos: int) -> datetime:
    """An ISO 8601 time; naive means UTC. Raises ``FilterError``."""
    if not isinstance(value, str):
        raise FilterError(f"position {pos}: expected an ISO 8601 time in quotes, got {value!r}", pos)
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise FilterError(f"position {pos}: expected an ISO 8601 time, got {value!r} ({exc})", pos) from exc


class Compiler:
    """Compiles filters for one dialect (``sqlite``, ``postgresql``, ``mysql``/``mariadb``)."""

    def __init__(self, dialect: str, ids: Mapping[str, str] | None = None) -> None:
        """``ids`` maps id prefixes written in ``upstream_of``/``downstream_of`` to the full
        ids they were resolved to (``idrefs.lineage_refs``)."""
        self.dialect = dialect
        self._ids = dict(ids or {})
        self._names = itertools.count()
        self._deindex = False
        #: The aliases of the MLMD-syntax filter being compiled (None: native syntax).
        self._scope: Scope | None = None

    def _name(self, prefix: str) -> str:
        return f"{prefix}{next(self._names)}"

    def compile(self, expr: Expr, entity: Entity, node: FromClause | None = None) -> ColumnElement[bool]:
        """The filter as a condition on ``node`` (default: the entity's table). A filter in
        MLMD's syntax is one condition over the node joined with the aliases it names (see
        :mod:`metatrail.consumer.query.mlmd_syntax`)."""
        node = entity.table if node is None else node
        if not uses_mlmd_syntax(expr):
            return self._expr(expr, entity, node)
        saved = self._scope
        try:
            if not needs_joins(expr):
                self._scope = Scope(entity.kind, node, self._name)
                return self._expr(expr, entity, node)
            inner = entity.table.alias(self._name("mt"))
            self._scope = Scope(entity.kind, inner, self._name)
            cond = self._expr(expr, entity, inner)
            hints = self._scope.hints(expr)
            return node.c.id.in_(select(inner.c.id).select_from(self._scope.joined).where(cond, *hints))
        finally:
            self._scope = saved

    def _expr(self, expr: Expr, ent: Entity, node: FromClause) -> ColumnElement[bool]:
        if isinstance(expr, And):
            return self._and(expr.items, ent, node)
        if isinstance(expr, Or):
            return or_(*(self._expr(e, ent, node) for e in expr.items))
        if isinstance(expr, Not):
            return not_(self._expr(expr.item, ent, node))
        if isinstance(expr, LineageOf):
            return self._lineage(expr, ent, node)
        return self._compare(expr, ent, node)

    # -- fields -------------------------------------------------------------------------
    def _compare(self, c: Compare, ent: Entity, node: FromClause) -> ColumnElement[bool]:
        head = c.field[0]
        if self._scope is not None:
            mlmd = self._mlmd_compare(c, ent, node)
            if mlmd is not None:
                return mlmd
        if head in PROPERTY_HEADS and (head != "parameters" or ent is EXECUTION):
            if len(c.field) != 2:
                raise FilterError(f"position {c.pos}: expected {head}.<key>, got {'.'.join(c.field)!r}", c.pos)
            return self._property(c, ent, node, PROPERTY_HEADS[head], c.field[1])
        if head == "context" and len(c.field) >= 2:
            return self._membership(c, ent, node)
        if len(c.field) == 1 and (head in ent.string_columns or head in ent.time_columns):
            return self._column(c, ent, node, head)
        expected = ", ".join(ent.fields + ["properties.<key>", "custom_properties.<key>", "context.<field>"])
        raise FilterError(
            f"position {c.pos}: unknown field {'.'.join(c.field)!r} for {ent.kind}s; expected one of {expected}",
            c.pos,
        )

    def _mlmd_compare(self, c: Compare, ent: Entity, node: FromClause) -> ColumnElement[bool] | None:
        """An MLMD-syntax predicate (None: a native one, compiled as usual)."""
        assert self._scope is not None
        head = c.field[0]
        if ALIAS.match(head) or (head in ("properties", "custom_properties") and len(c.field) == 3):
            if node is not self._scope.node:
                raise FilterError(f"position {c.pos}: {'.'.join(c.field)} cannot be used inside context.<field>",
                                  c.pos)
            expr, kind = self._scope.field(c)
            return mlmd_compare(expr, kind, c, self.dialect)
        if len(c.field) != 1:
            return None
        if head == "type_id":
            raise FilterError(f"position {c.pos}: type_id (MLMD's type number) is not imported; compare type", c.pos)
        fields = node_fields(ent.kind, node)
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        if head not in fields or (head == "id" and any(isinstance(v, str) for v in values)):
            return None  # a native field (or a metatrail id)
        expr, kind = fields[head]
        return mlmd_compare(expr, kind, c, self.dialect)

    def _column(self, c: Compare, ent: Entity, node: FromClause, name: str) -> ColumnElement[bool]:
        col: Any = node.c[name]
        if self._deindex:  # SQLite's "+col": the same values, no index
            col = type_coerce(col.op("||")(literal("", String())), col.type)
        if c.op == "IS NULL":
            return col.is_(None)
        if c.op == "IS NOT NULL":
            return col.is_not(None)
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        if name in ent.time_columns:
            if c.op in ("LIKE", "NOT LIKE"):
                raise FilterError(f"position {c.pos}: LIKE does not apply to the time {name}", c.pos)
            times = [parse_time(v, c.pos) for v in values]
            if c.op == "IN":
                return col.in_(times)
            if c.op == "NOT IN":
                return self._present(col, col.not_in(times))
            return sp.compare_op(col, c.op, times[0])
        for v in values:
            if not isinstance(v, str):
                raise FilterError(f"position {c.pos}: {name} compares with a quoted string, got {v!r}", c.pos)
        strs = [str(v) for v in values]
        if c.op == "=":
            return sp.str_eq(col, strs[0], self.dialect)
        if c.op == "!=":
            return self._present(col, not_(sp.str_eq(col, strs[0], self.dialect)))
        if c.op == "IN":
            return sp.str_in(col, strs, self.dialect)
        if c.op == "NOT IN":
            return self._present(col, not_(sp.str_in(col, strs, self.dialect)))
        if c.op in ("LIKE", "NOT LIKE"):
            sp.check_like_pattern(strs[0], c.pos)
            cond = sp.like(col, strs[0], self.dialect)
            return cond if c.op == "LIKE" else self._present(col, not_(cond))
        return sp.str_cmp(col, c.op, strs[0], self.dialect)

    def _present(self, col: Any, cond: ColumnElement[bool]) -> ColumnElement[bool]:
        """A negative comparison: native syntax says it holds only where the column has a
        value (two-valued); MLMD's syntax leaves SQL's three-valued logic as it is."""
        return cond if self._scope is not None else and_(col.is_not(None), cond)

    def _property(self, c: Compare, ent: Entity, node: FromClause, custom: bool, key: str) -> ColumnElement[bool]:
        p = ent.props.alias(f"p{next(self._names)}")
        if c.op in POSITIVE_OPS:
            return self._has(p, node, custom, key, self._positive(c, p))
        if c.op == "IS NULL":
            return not_(self._has(p, node, custom, key, []))
        if c.op == "IS NOT NULL":
            return self._has(p, node, custom, key, [])
        positive = Compare(c.field, {"!=": "=", "NOT IN": "IN", "NOT LIKE": "LIKE"}[c.op], c.value, c.pos)
        q = ent.props.alias(f"p{next(self._names)}")
        return and_(self._has(p, node, custom, key, []), not_(self._has(q, node, custom, key, self._positive(positive, q))))

    @staticmethod
    def _has(p: FromClause, node: FromClause, custom: bool, key: str, conds: list[ColumnElement[bool]]) -> ColumnElement[bool]:
        """The node has property ``key`` meeting ``conds``: an uncorrelated IN, so the
        property index (name, is_custom, value) drives the query on every backend."""
        return node.c.id.in_(select(p.c.node_id).where(p.c.name == key, p.c.is_custom == custom, *conds))

    def _positive(self, c: Compare, p: FromClause) -> list[ColumnElement[bool]]:
        """Conditions on one property row for = IN LIKE < <= > >=."""
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        if c.op in ("=", "IN"):
            return [self._value_in(p, values, c.pos)]
        if c.op == "LIKE":
            pattern = str(values[0])
            sp.check_like_pattern(pattern, c.pos)
            return [p.c.value_type == "string", sp.like(p.c.string_value, pattern, self.dialect)]
        v = values[0]
        if isinstance(v, bool):
            raise FilterError(f"position {c.pos}: booleans compare with =, != or IN only", c.pos)
        if isinstance(v, str):
            conds = [p.c.value_type == "string", sp.str_cmp(p.c.string_value, c.op, v, self.dialect)]
            if not sp.is_mysql(self.dialect):  # narrow through the string_key index
                bound = v[:STRING_KEY_LEN]
                conds.append(p.c.string_key <= bound if c.op in ("<", "<=") else p.c.string_key >= bound)
            return conds
        return [sp.compare_op(p.c.double_value, c.op, float(v))]

    def _and(self, items: tuple[Expr, ...], ent: Entity, node: FromClause) -> ColumnElement[bool]:
        """AND, with positive comparisons on the same property merged into one lookup
        (``p >= 1 AND p < 9`` is one index range, not two large sets intersected); exact,
        since a node has at most one row per property."""
        groups: dict[tuple[bool, str], list[Compare]] = {}
        rest: list[Expr] = []
        for item in items:
            prop = self._property_key(item, ent)
            if prop is not None and isinstance(item, Compare) and item.op in POSITIVE_OPS:
                groups.setdefault(prop, []).append(item)
            else:
                rest.append(item)
        conds: list[ColumnElement[bool]] = []
        for (custom, key), compares in groups.items():
            p = ent.props.alias(f"p{next(self._names)}")
            merged = [cond for c in compares for cond in self._positive(c, p)]
            conds.append(self._has(p, node, custom, key, merged))
        # SQLite without statistics prefers any equality index (type = 'Model') over the
        # far more selective property lookup; hide the column indexes when one is here.
        deindex = self.dialect == "sqlite" and bool(groups or any(isinstance(e, LineageOf) for e in rest))
        saved, self._deindex = self._deindex, deindex
        try:
            conds.extend(self._expr(e, ent, node) for e in rest)
        finally:
            self._deindex = saved
        return and_(*conds)

    @staticmethod
    def _property_key(item: Expr, ent: Entity) -> tuple[bool, str] | None:
        if not isinstance(item, Compare) or len(item.field) != 2:
            return None
        head = item.field[0]
        if head in PROPERTY_HEADS and (head != "parameters" or ent is EXECUTION):
            return PROPERTY_HEADS[head], item.field[1]
        return None

    def _value_in(self, p: FromClause, values: tuple[Any, ...], pos: int) -> ColumnElement[bool]:
        strs = [v for v in values if isinstance(v, str)]
        nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        bools = [v for v in values if isinstance(v, bool)]
        conds: list[ColumnElement[bool]] = []
        if strs:
            keys = sorted({s[:STRING_KEY_LEN] for s in strs})
            if len(strs) == 1:
                conds.append(and_(p.c.string_key == keys[0], sp.str_eq(p.c.string_value, strs[0], self.dialect)))
            else:
                conds.append(and_(p.c.string_key.in_(keys), sp.str_in(p.c.string_value, strs, self.dialect)))
        if nums:
            conds.append(p.c.double_value == nums[0] if len(nums) == 1 else p.c.double_value.in_(nums))
        if bools:
            conds.append(p.c.bool_value == bools[0] if len(bools) == 1 else p.c.bool_value.in_(bools))
        return sp.ors(conds)

    def _membership(self, c: Compare, ent: Entity, node: FromClause) -> ColumnElement[bool]:
        table, node_col, ctx_col = ent.membership
        link = table.alias(f"l{next(self._names)}")
        ctx = CONTEXT.table.alias(f"c{next(self._names)}")
        inner = Compare(c.field[1:], c.op, c.value, c.pos)
        cond = self._compare(inner, CONTEXT, ctx)
        return node.c.id.in_(
            select(link.c[node_col]).select_from(link.join(ctx, ctx.c.id == link.c[ctx_col])).where(cond)
        )

    # -- lineage ------------------------------------------------------------------------
    def _lineage(self, expr: LineageOf, ent: Entity, node: FromClause) -> ColumnElement[bool]:
        if ent is CONTEXT:
            raise FilterError(f"position {expr.pos}: upstream_of/downstream_of apply to artifacts and executions", expr.pos)
        start = self._ids.get(expr.node_id, expr.node_id)
        if len(start) != 36:
            return false()  # not a node id: nothing is reachable from it
        hops = DEFAULT_PREDICATE_HOPS if expr.max_hops is None else expr.max_hops
        if hops == 0:
            return false()
        cte = artifact_reach(start, expr.direction, hops, f"reach{next(self._names)}")
        if ent is ARTIFACT:
            ids = select(cte.c.id).where(cte.c.id != start)
        else:
            ids = executions_next_to(cte, expr.direction, hops - 1)
        return and_(node.c.id.in_(ids), node.c.id != start)
