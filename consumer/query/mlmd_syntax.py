"""MLMD's ``filter_query`` syntax, with MLMD's meaning, in the one filter language.

What a filter may say in MLMD's syntax (``ListOptions(filter_query=...)`` of ml-metadata):

* the node's own attributes: ``id`` (MLMD's integer id, kept as ``mlmd_id`` by the
  importer), ``type``, ``name``, ``uri``, ``external_id``, ``state`` (artifacts),
  ``last_known_state`` (executions), ``create_time_since_epoch`` and
  ``last_update_time_since_epoch`` (milliseconds since the epoch);
* ``properties.<name>.int_value|double_value|string_value|bool_value`` and the same for
  ``custom_properties`` (backquote odd names: ``custom_properties.`a.b`.string_value``);
* neighbours through an alias, ``<kind>_<alias>.<field>``: ``contexts_<a>`` (artifacts and
  executions: id, name, type, the two times), ``events_<a>`` (artifacts and executions:
  type, milliseconds_since_epoch, execution_id or artifact_id), and on contexts
  ``parent_contexts_<a>``, ``child_contexts_<a>``, ``artifacts_<a>`` (id, name, type, uri,
  state, external_id, times) and ``executions_<a>`` (id, name, type, last_known_state,
  external_id, times);
* enum values bare or quoted or as MLMD's numbers: ``state = LIVE``, ``state IN (PENDING,
  LIVE)``, ``last_known_state != 'FAILED'``, ``events_0.type = INPUT``.

Meaning, as MLMD gives it: the filter is one SQL condition over the node joined with every
alias it names (each property and each ``<kind>_<alias>`` its own inner join), so a
node matches when some combination of its neighbours satisfies the whole condition; a
node lacking a named property or having no neighbour of a named kind never matches, even
under ``!=`` or ``NOT`` (MLMD's inner joins); comparisons follow SQL's three-valued logic;
``!=`` and ``NOT IN`` on a state also match nodes whose state MLMD left unset (imported
as UNKNOWN). A filter using any of this syntax is compiled this way as a whole, native
predicates included.

Where metatrail accepts what ml-metadata 1.17.1 refuses: ``state`` compared with
ABANDONED or REFERENCE, bare enum values in ``IN (...)`` lists, ``events_<a>.type`` equal
to PENDING_OUTPUT, ``bool_value`` and ``external_id`` on neighbours, ``id`` on parent and
child contexts. Where it differs: ``LIKE`` is case-sensitive on every backend (MLMD's is
not on SQLite); MLMD's unset state and UNKNOWN are one value (``state IS NULL`` matches
both); an unset ``uri`` was imported as the empty string; ``type_id`` is not kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import ColumnElement, FromClause, Table, and_, case, false, not_, or_

from metatrail.consumer.query import sqlparts as sp
from metatrail.consumer.query.filters import And, Bare, Compare, Expr, LineageOf, Not, Or
from metatrail.consumer.store import models as m
from metatrail.consumer.store.models import STRING_KEY_LEN
from metatrail.schemas.errors import FilterError

ALIAS = re.compile(r"^(contexts|parent_contexts|child_contexts|artifacts|executions|events)_\w+$")
VALUE_COLUMNS = ("int_value", "double_value", "string_value", "bool_value")
#: Attribute names only MLMD's syntax has.
MLMD_ATTRIBUTES = frozenset({"create_time_since_epoch", "last_update_time_since_epoch", "last_known_state", "type_id"})
ARTIFACT_STATES = ("UNKNOWN", "PENDING", "LIVE", "MARKED_FOR_DELETION", "DELETED", "ABANDONED", "REFERENCE")
EXECUTION_STATES = ("UNKNOWN", "NEW", "RUNNING", "COMPLETE", "FAILED", "CACHED", "CANCELED")
EDGE_TYPES = ("UNKNOWN", "DECLARED_OUTPUT", "DECLARED_INPUT", "INPUT", "OUTPUT", "INTERNAL_INPUT",
              "INTERNAL_OUTPUT", "PENDING_OUTPUT")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
ONE_MS = timedelta(milliseconds=1)
#: alias kind -> node kinds it applies to
ALIAS_KINDS = {"contexts": ("artifact", "execution"), "events": ("artifact", "execution"),
               "parent_contexts": ("context",), "child_contexts": ("context",), "artifacts": ("context",),
               "executions": ("context",)}
NODE_TABLES = {"artifact": m.ArtifactRow.__table__, "execution": m.ExecutionRow.__table__,
               "context": m.ContextRow.__table__}

#: A field's SQL expression and how its values compare: "text", "int", "double", "bool",
#: "millis", or "enum:<artifact|execution|edge>".
Field = tuple[Any, str]


def _compares(expr: Expr) -> Iterator[Compare]:
    if isinstance(expr, Compare):
        yield expr
    elif isinstance(expr, (And, Or)):
        for item in expr.items:
            yield from _compares(item)
    elif isinstance(expr, Not):
        yield from _compares(expr.item)
    elif isinstance(expr, LineageOf):
        return


def _is_mlmd(c: Compare) -> bool:
    head = c.field[0]
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    return (
        bool(ALIAS.match(head)) and len(c.field) == 2
        or head in ("properties", "custom_properties") and len(c.field) == 3
        or len(c.field) == 1 and head in MLMD_ATTRIBUTES
        or len(c.field) == 1 and head in ("id", "state")
        and any(isinstance(v, int) and not isinstance(v, bool) for v in values)
        or any(isinstance(v, Bare) for v in values)
    )


def uses_mlmd_syntax(expr: Expr) -> bool:
    """Whether the filter says anything only MLMD's syntax says (then all of it has MLMD's
    meaning)."""
    return any(_is_mlmd(c) for c in _compares(expr))


def needs_joins(expr: Expr) -> bool:
    """Whether the filter names a property or a neighbour the MLMD way (joins needed)."""
    return any(_is_mlmd(c) and (c.field[0] in ("properties", "custom_properties") or ALIAS.match(c.field[0]))
               for c in _compares(expr))


def _times(table: FromClause) -> dict[str, Field]:
    return {"create_time_since_epoch": (table.c.created_at, "millis"),
            "last_update_time_since_epoch": (table.c.updated_at, "millis")}


def node_fields(kind: str, table: FromClause) -> dict[str, Field]:
    """The MLMD fields of an artifact, execution or context row ``table``."""
    fields: dict[str, Field] = {"id": (table.c.mlmd_id, "int"), "name": (table.c.name, "text"),
                                "type": (table.c.type, "text"), "external_id": (table.c.external_id, "text"),
                                **_times(table)}
    if kind == "artifact":
        fields.update(uri=(table.c.uri, "text"), state=(table.c.state, "enum:artifact"))
    elif kind == "execution":
        fields.update(last_known_state=(table.c.state, "enum:execution"), state=(table.c.state, "enum:execution"))
    return fields


class Scope:
    """The aliases of one MLMD-syntax filter over node rows ``node`` of ``kind``: each
    property or neighbour alias becomes one inner join, made when the filter first names it."""

    def __init__(self, kind: str, node: FromClause, new_name: Callable[[str], str]) -> None:
        self.kind = kind
        self.node = node
        self.new_name = new_name
        self.joined: FromClause = node
        self._aliases: dict[tuple[str, ...], dict[str, Field]] = {}
        #: the property rows of each property alias
        self._raw: dict[tuple[str, ...], FromClause] = {}

    def field(self, c: Compare) -> Field:
        """The SQL expression and value kind of an MLMD field. Raises ``FilterError``."""
        head = c.field[0]
        if head in ("properties", "custom_properties"):
            return self._property(c, head == "custom_properties")
        fields = self._alias(c, head)
        name = c.field[1]
        if name not in fields:
            raise FilterError(f"position {c.pos}: {head} has no field {name!r}; expected one of "
                              f"{', '.join(sorted(fields))}", c.pos)
        return fields[name]

    def _property(self, c: Compare, custom: bool) -> Field:
        key, column = c.field[1], c.field[2]
        if column not in VALUE_COLUMNS:
            raise FilterError(f"position {c.pos}: expected {c.field[0]}.<key> or MLMD's {c.field[0]}.<key>."
                              f"{'|'.join(VALUE_COLUMNS)}, got {'.'.join(c.field)!r}", c.pos)
        found = self._aliases.get(("property", str(custom), key))
        if found is None:
            props = PROPERTY_TABLES[self.kind].alias(self.new_name("mp"))
            self.joined = self.joined.join(props, and_(props.c.node_id == self.node.c.id, props.c.name == key,
                                                       props.c.is_custom == custom))
            found = {"int_value": (props.c.int_value, "int"),
                     # ints keep a copy in double_value (one numeric index); MLMD's double
                     # column holds doubles only
                     "double_value": (case((props.c.value_type == "float", props.c.double_value)), "double"),
                     "string_value": (props.c.string_value, "text"), "bool_value": (props.c.bool_value, "bool")}
            self._aliases[("property", str(custom), key)] = found
            self._raw[("property", str(custom), key)] = props
        return found[column]

    def hints(self, expr: Expr) -> list[ColumnElement[bool]]:
        """Conditions implied by the filter's top-level property comparisons, on the
        indexed value columns (ints and floats in ``double_value``, a string's
        ``string_key``): added to the filter, they let the index on (name, is_custom,
        value) find the property rows first. Strict ranges hint non-strictly (a float copy
        of a large int may round)."""
        tops = list(expr.items) if isinstance(expr, And) else [expr]
        out: list[ColumnElement[bool]] = []
        for c in tops:
            if not (isinstance(c, Compare) and c.field[0] in ("properties", "custom_properties") and len(c.field) == 3
                    and c.op in ("=", "IN", "<", "<=", ">", ">=")):
                continue
            found = self._aliases.get(("property", str(c.field[0] == "custom_properties"), c.field[1]))
            raw = self._raw.get(("property", str(c.field[0] == "custom_properties"), c.field[1]))
            if found is None or raw is None:
                continue
            values = c.value if isinstance(c.value, tuple) else (c.value,)
            op = {"<": "<=", ">": ">="}.get(c.op, c.op)
            column = c.field[2]
            if column in ("int_value", "double_value") and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                floats = [float(v) for v in values]
                out.append(raw.c.double_value.in_(floats) if op == "IN" else sp.compare_op(raw.c.double_value, op, floats[0]))
            elif column == "string_value" and all(isinstance(v, str) and not isinstance(v, Bare) for v in values):
                keys = sorted({str(v)[:STRING_KEY_LEN] for v in values})
                if op == "IN":
                    out.append(raw.c.string_key.in_(keys))
                elif op == "=":
                    out.append(raw.c.string_key == keys[0])
        return out

    def _alias(self, c: Compare, head: str) -> dict[str, Field]:
        found = self._aliases.get((head,))
        if found is not None:
            return found
        kind = ALIAS.match(head).group(1)  # type: ignore[union-attr]
        if self.kind not in ALIAS_KINDS[kind]:
            raise FilterError(f"position {c.pos}: {kind}_<alias> does not apply to {self.kind}s", c.pos)
        node = self.node
        if kind == "events":
            edges = m.EdgeRow.__table__.alias(self.new_name("me"))
            mine, other = ("artifact_id", "execution") if self.kind == "artifact" else ("execution_id", "artifact")
            far = NODE_TABLES[other].alias(self.new_name("mf"))
            self.joined = self.joined.join(edges, edges.c[mine] == node.c.id).join(
                far, far.c.id == edges.c[f"{other}_id"])
            found = {"type": (edges.c.edge_type, "enum:edge"), "milliseconds_since_epoch": (edges.c.created_at, "millis"),
                     f"{other}_id": (far.c.mlmd_id, "int")}
        else:
            link_table, mine, theirs, other = _LINKS[(self.kind, kind)]
            link = link_table.alias(self.new_name("ml"))
            far = NODE_TABLES[other].alias(self.new_name("mn"))
            self.joined = self.joined.join(link, link.c[mine] == node.c.id).join(far, far.c.id == link.c[theirs])
            found = node_fields(other, far)
        self._aliases[(head,)] = found
        return found


PROPERTY_TABLES: dict[str, Table] = {"artifact": m.ArtifactPropertyRow.__table__,  # type: ignore[dict-item]
                                     "execution": m.ExecutionPropertyRow.__table__,
                                     "context": m.ContextPropertyRow.__table__}
#: (node kind, alias kind) -> (link table, its column to this node, to the other, other's kind)
_LINKS: dict[tuple[str, str], tuple[Table, str, str, str]] = {
    ("artifact", "contexts"): (m.AttributionRow.__table__, "artifact_id", "context_id", "context"),  # type: ignore[dict-item]
    ("execution", "contexts"): (m.AssociationRow.__table__, "execution_id", "context_id", "context"),  # type: ignore[dict-item]
    ("context", "parent_contexts"): (m.ParentContextRow.__table__, "context_id", "parent_id", "context"),  # type: ignore[dict-item]
    ("context", "child_contexts"): (m.ParentContextRow.__table__, "parent_id", "context_id", "context"),  # type: ignore[dict-item]
    ("context", "artifacts"): (m.AttributionRow.__table__, "context_id", "artifact_id", "artifact"),  # type: ignore[dict-item]
    ("context", "executions"): (m.AssociationRow.__table__, "context_id", "execution_id", "execution"),  # type: ignore[dict-item]
}


def compare(expr: Any, value_kind: str, c: Compare, dialect: str) -> ColumnElement[bool]:
    """``c``'s comparison on ``expr`` with SQL's three-valued logic, as MLMD's SQL has it.
    Raises ``FilterError`` for a value or operator the field does not take."""
    if c.op == "IS NULL" or c.op == "IS NOT NULL":
        if value_kind in ("enum:artifact", "enum:execution"):  # an unset state was imported as UNKNOWN
            unset = expr == "UNKNOWN"
            return unset if c.op == "IS NULL" else not_(unset)
        return expr.is_(None) if c.op == "IS NULL" else expr.is_not(None)  # type: ignore[no-any-return]
    values = c.value if isinstance(c.value, tuple) else (c.value,)
    negated = c.op in ("!=", "NOT IN", "NOT LIKE")
    op = {"!=": "=", "NOT IN": "IN", "NOT LIKE": "LIKE"}.get(c.op, c.op)
    if value_kind.startswith("enum:"):
        cond = _enum(expr, value_kind, op, values, c)
    elif value_kind == "text":
        cond = _text(expr, op, values, c, dialect)
    elif value_kind == "millis":
        cond = _millis(expr, op, values, c)
    else:
        cond = _number(expr, value_kind, op, values, c)
    return not_(cond) if negated else cond


def _reject_bare(values: tuple[Any, ...], c: Compare) -> None:
    for v in values:
        if isinstance(v, Bare):
            raise FilterError(f"position {c.pos}: {str(v)!r} is a bare name, which only an MLMD enum value may be "
                              f"(state, last_known_state, events_<alias>.type); quote strings (comparing two "
                              f"fields is not supported)", c.pos)


def _enum(expr: Any, value_kind: str, op: str, values: tuple[Any, ...], c: Compare) -> ColumnElement[bool]:
    names = {"enum:artifact": ARTIFACT_STATES, "enum:execution": EXECUTION_STATES, "enum:edge": EDGE_TYPES}[value_kind]
    if op not in ("=", "IN"):
        raise FilterError(f"position {c.pos}: {'.'.join(c.field)} compares with =, !=, IN or NOT IN", c.pos)
    wanted = []
    for v in values:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(names):
            wanted.append(names[v])
        elif isinstance(v, str) and v.upper() in names:
            wanted.append(v.upper())
        else:
            raise FilterError(f"position {c.pos}: {v!r} is not one of {', '.join(names)}", c.pos)
    return expr == wanted[0] if len(wanted) == 1 else expr.in_(wanted)  # type: ignore[no-any-return]


def _text(expr: Any, op: str, values: tuple[Any, ...], c: Compare, dialect: str) -> ColumnElement[bool]:
    _reject_bare(values, c)
    for v in values:
        if not isinstance(v, str):
            raise FilterError(f"position {c.pos}: {'.'.join(c.field)} compares with a quoted string, got {v!r}", c.pos)
    strs = [str(v) for v in values]
    if op == "=":
        return sp.str_eq(expr, strs[0], dialect)
    if op == "IN":
        return sp.str_in(expr, strs, dialect)
    if op == "LIKE":
        sp.check_like_pattern(strs[0], c.pos)
        return sp.like(expr, strs[0], dialect)
    return sp.str_cmp(expr, op, strs[0], dialect)


def _number(expr: Any, value_kind: str, op: str, values: tuple[Any, ...], c: Compare) -> ColumnElement[bool]:
    _reject_bare(values, c)
    if value_kind == "bool":
        if op not in ("=", "IN") or not all(isinstance(v, bool) or v in (0, 1) for v in values):
            raise FilterError(f"position {c.pos}: bool_value compares with TRUE or FALSE (=, !=, IN)", c.pos)
        flags = [bool(v) for v in values]
        return expr == flags[0] if len(flags) == 1 else expr.in_(flags)  # type: ignore[no-any-return]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise FilterError(f"position {c.pos}: {'.'.join(c.field)} compares with a number, got {v!r}", c.pos)
    if op == "LIKE":
        raise FilterError(f"position {c.pos}: LIKE applies to strings", c.pos)
    if op == "IN":
        return expr.in_(list(values))  # type: ignore[no-any-return]
    return sp.compare_op(expr, op, values[0])


def _millis(expr: Any, op: str, values: tuple[Any, ...], c: Compare) -> ColumnElement[bool]:
    """A time column against milliseconds since the epoch, the time cut to the millisecond
    (``= t`` holds for any time within that millisecond), as index ranges."""
    _reject_bare(values, c)
    starts = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int):
            raise FilterError(f"position {c.pos}: {'.'.join(c.field)} compares with milliseconds since the epoch "
                              f"(an integer), got {v!r}", c.pos)
        try:
            starts.append(EPOCH + timedelta(milliseconds=v))
        except OverflowError as exc:
            raise FilterError(f"position {c.pos}: {v} milliseconds is out of the range of times", c.pos) from exc
    if op == "LIKE":
        raise FilterError(f"position {c.pos}: LIKE does not apply to times", c.pos)
    t = starts[0]
    if op == "IN":
        return or_(*(and_(expr >= s, expr < s + ONE_MS) for s in starts)) if starts else false()
    return {"=": lambda: and_(expr >= t, expr < t + ONE_MS), "<": lambda: expr < t, "<=": lambda: expr < t + ONE_MS,
            ">": lambda: expr >= t + ONE_MS, ">=": lambda: expr >= t}[op]()
