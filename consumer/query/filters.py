"""The filter language: a tokenizer and a recursive-descent parser producing an AST.

Grammar (keywords case-insensitive; strings in single or double quotes, a quote doubled
inside; keys with odd characters in backticks: ``properties.`my key```)::

    filter     := or_expr EOF
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | primary
    primary    := "(" or_expr ")" | lineage | predicate
    lineage    := ("upstream_of" | "downstream_of") "(" STRING ["," INTEGER] ")"
    predicate  := field ( op value
                        | ["NOT"] "IN" "(" value ("," value)* ")"
                        | ["NOT"] "LIKE" STRING
                        | "IS" ["NOT"] "NULL" )
    op         := "=" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    field      := name ("." name)*          e.g. type, properties.lr, context.name
    value      := STRING | NUMBER | "TRUE" | "FALSE" | NAME (an MLMD enum value: LIVE, FAILED...)

MLMD's ``filter_query`` syntax parses with the same grammar (``contexts_a.name``,
``properties.span.int_value``, ``state = LIVE``); the compiler gives it MLMD's meaning
(:mod:`metatrail.consumer.query.mlmd_syntax`).

Parsing knows nothing about tables: :mod:`metatrail.consumer.query.compile` checks field names
against the entity and turns the tree into SQLAlchemy expressions with bound parameters.
Every syntax error is a ``FilterError`` naming the position (0-based character offset) and
what was expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Union

from metatrail.schemas.errors import FilterError



class Bare(str):
    """A bare name in a value's place: an MLMD enum value (``state = LIVE``,
    ``last_known_state IN (FAILED, CANCELED)``, ``events_0.type = INPUT``). The compiler
    accepts it only where an enum is compared."""


Literal_ = Union[str, int, float, bool]

#: Deepest nesting of parentheses / NOT accepted (keeps the parser off Python's stack limit).
MAX_DEPTH = 64
#: Longest filter accepted, in characters.
MAX_FILTER_CHARS = 65_536
#: Most comparisons (and lineage predicates) in one filter. Each becomes one or two levels
#: of a chain of ANDs/ORs (SQLite refuses expressions deeper than 1,000 levels) and up to
#: two property lookups (PostgreSQL's planning time grows steeply with them: a hundred
#: negated property comparisons plan in seconds, four hundred in minutes). The limit keeps
#: every filter the parser accepts within what every backend evaluates promptly; long
#: alternatives belong in IN lists.
MAX_TERMS = 100
#: Most literal values in one filter (IN lists included): each becomes one or two bound
#: parameters, and PostgreSQL takes at most 65,535 per statement.
MAX_VALUES = 10_000
KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "TRUE", "FALSE"})
LINEAGE_FUNCS = frozenset({"upstream_of", "downstream_of"})
_INT_LIMIT = 2**63

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),.])
  """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # ident, keyword, string, number, op, punct, quoted_ident, eof
    value: object
    pos: int
    text: str


@dataclass(frozen=True)
class Compare:
    """``field op value``. ``op`` is one of = != < <= > >= LIKE NOT LIKE IN NOT IN IS NULL
    IS NOT NULL; ``value`` is a literal, a tuple of literals (IN) or None (IS NULL)."""

    field: tuple[str, ...]
    op: str
    value: Literal_ | tuple[Literal_, ...] | None
    pos: int


@dataclass(frozen=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Not:
    item: Expr


@dataclass(frozen=True)
class LineageOf:
    """``upstream_of('<id>'[, hops])`` / ``downstream_of(...)``: nodes reachable from id."""

    direction: str  # "upstream" | "downstream"
    node_id: str
    max_hops: int | None
    pos: int


Expr = Union[Compare, And, Or, Not, LineageOf]


def _describe(tok: Token) -> str:
    return "end of filter" if tok.kind == "eof" else repr(tok.text)


def _check_text(text: str, pos: int) -> str:
    for i, ch in enumerate(text):
        if ch == "\x00" or "\ud800" <= ch <= "\udfff":
            raise FilterError(
                f"position {pos + i}: strings may not contain NUL or lone surrogate characters",
                pos + i,
            )
    return text


def _read_quoted(source: str, start: int, quote: str) -> tuple[str, int]:
    """Read a quoted string or backticked name starting at ``start``; a doubled quote
    stands for one. Returns (text, end offset)."""
    i = start + 1
    parts: list[str] = []
    while True:
        j = source.find(quote, i)
        if j < 0:
            raise FilterError(f"position {start}: unterminated {quote}-quoted text; expected a closing {quote}", start)
        parts.append(source[i:j])
        if source.startswith(quote * 2, j):
            parts.append(quote)
            i = j + 2
            continue
        return _check_text("".join(parts), start), j + 1


def tokenize(source: str) -> list[Token]:
    """Split a filter into tokens. Raises ``FilterError`` on an unknown character, an
    unterminated string or a number out of range."""
    if len(source) > MAX_FILTER_CHARS:
        raise FilterError(f"position {MAX_FILTER_CHARS}: filter longer than {MAX_FILTER_CHARS} characters", MAX_FILTER_CHARS)
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        ch = source[pos]
        if ch in ("'", '"', "`"):
            text, end = _read_quoted(source, pos, ch)
            kind = "quoted_ident" if ch == "`" else "string"
            tokens.append(Token(kind, text, pos, source[pos:end]))
            pos = end
            continue
        m = _TOKEN_RE.match(source, pos)
        if m is None:
            raise FilterError(f"position {pos}: unexpected character {ch!r}", pos)
        group, text = m.lastgroup or "", m.group()
        if group == "number":
            tokens.append(Token("number", _number(text, pos), pos, text))
        elif group == "ident":
            upper = text.upper()
            if upper in KEYWORDS:
                tokens.append(Token("keyword", upper, pos, text))
            else:
                tokens.append(Token("ident", text, pos, text))
        elif group in ("op", "punct"):
            tokens.append(Token(group, "!=" if text == "<>" else text, pos, text))
        pos = m.end()
    tokens.append(Token("eof", None, len(source), ""))
    return tokens


def _number(text: str, pos: int) -> int | float:
    if re.fullmatch(r"-?\d+", text):
        value = int(text)
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise FilterError(f"position {pos}: integer {text} out of the 64-bit range", pos)
        return value
    result = float(text)
    if not math.isfinite(result):
        raise FilterError(f"position {pos}: number {text} out of range", pos)
    return result


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.i = 0
        self.depth = 0
        self.terms = 0
        self.values = 0

    # -- token helpers ------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def _advance(self) -> Token:
        tok = self.tokens[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def _is(self, kind: str, value: object = None) -> bool:
        tok = self.tok
        return tok.kind == kind and (value is None or tok.value == value)

    def _expect(self, kind: str, value: object, what: str) -> Token:
        if not self._is(kind, value):
            self._fail(what)
        return self._advance()

    def _fail(self, what: str) -> None:
        tok = self.tok
        raise FilterError(f"position {tok.pos}: expected {what}, got {_describe(tok)}", tok.pos)

    # -- grammar ------------------------------------------------------------------------
    def parse(self) -> Expr:
        if self._is("eof"):
            self._fail("a condition")
        expr = self._or()
        if not self._is("eof"):
            self._fail("AND, OR or end of filter")
        return expr

    def _nest(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            tok = self.tok
            raise FilterError(f"position {tok.pos}: nesting deeper than {MAX_DEPTH} levels", tok.pos)

    def _term(self, pos: int) -> None:
        """Count a comparison (or lineage predicate) against ``MAX_TERMS``."""
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise FilterError(
                f"position {pos}: a filter may hold at most {MAX_TERMS} comparisons; "
                "write long alternatives as IN (...) lists", pos)

    def _or(self) -> Expr:
        items = [self._and()]
        while self._is("keyword", "OR"):
            self._advance()
            items.append(self._and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def _and(self) -> Expr:
        items = [self._not()]
        while self._is("keyword", "AND"):
            self._advance()
            items.append(self._not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def _not(self) -> Expr:
        if self._is("keyword", "NOT"):
            self._advance()
            self._nest()
            item = self._not()
            self.depth -= 1
            return Not(item)
        return self._primary()

    def _primary(self) -> Expr:
        if self._is("punct", "("):
            self._advance()
            self._nest()
            expr = self._or()
            self.depth -= 1
            self._expect("punct", ")", "')'")
            return expr
        if self.tok.kind == "ident" and self.tok.value in LINEAGE_FUNCS and self.tokens[self.i + 1].value == "(":
            return self._lineage()
        return self._predicate()

    def _lineage(self) -> LineageOf:
        name = self._advance()
        self._term(name.pos)
        self._expect("punct", "(", "'('")
        if not self._is("string"):
            self._fail(f"a quoted node id as the argument of {name.value}")
        node_id = str(self._advance().value)
        hops: int | None = None
        if self._is("punct", ","):
            self._advance()
            tok = self.tok
            if tok.kind != "number" or not isinstance(tok.value, int) or tok.value < 0:
                self._fail("a non-negative integer hop limit")
            hops = int(tok.value)  # type: ignore[call-overload]
            self._advance()
        self._expect("punct", ")", "')'")
        direction = "upstream" if name.value == "upstream_of" else "downstream"
        return LineageOf(direction, node_id, hops, name.pos)

    def _field(self) -> tuple[tuple[str, ...], int]:
        tok = self.tok
        if tok.kind not in ("ident", "quoted_ident"):
            self._fail("a field name (type, name, uri, state, properties.<key>, ...) or '('")
        parts = [str(self._advance().value)]
        while self._is("punct", "."):
            self._advance()
            if self.tok.kind not in ("ident", "quoted_ident", "keyword"):
                self._fail("a name after '.'")
            part = self._advance()
            parts.append(part.text if part.kind == "keyword" else str(part.value))
        return tuple(parts), tok.pos

    def _literal(self) -> str | int | float | bool:
        tok = self.tok
        self.values += 1
        if self.values > MAX_VALUES:
            raise FilterError(f"position {tok.pos}: a filter may hold at most {MAX_VALUES} values", tok.pos)
        if tok.kind in ("string", "number"):
            self._advance()
            return tok.value  # type: ignore[return-value]
        if tok.kind == "keyword" and tok.value in ("TRUE", "FALSE"):
            self._advance()
            return tok.value == "TRUE"
        if tok.kind == "ident":
            self._advance()
            return Bare(str(tok.value))
        self._fail("a value (a quoted string, a number, TRUE or FALSE)")
        raise AssertionError  # unreachable

    def _predicate(self) -> Compare:
        field, pos = self._field()
        self._term(pos)
        tok = self.tok
        if tok.kind == "op":
            self._advance()
            return Compare(field, str(tok.value), self._literal(), pos)
        negated = False
        if self._is("keyword", "NOT"):
            self._advance()
            negated = True
            if not (self._is("keyword", "IN") or self._is("keyword", "LIKE")):
                self._fail("IN or LIKE after NOT")
        if self._is("keyword", "IN"):
            self._advance()
            self._expect("punct", "(", "'(' after IN")
            values = [self._literal()]
            while self._is("punct", ","):
                self._advance()
                values.append(self._literal())
            self._expect("punct", ")", "',' or ')'")
            return Compare(field, "NOT IN" if negated else "IN", tuple(values), pos)
        if self._is("keyword", "LIKE"):
            self._advance()
            if not self._is("string"):
                self._fail("a quoted pattern after LIKE")
            return Compare(field, "NOT LIKE" if negated else "LIKE", str(self._advance().value), pos)
        if self._is("keyword", "IS"):
            self._advance()
            op = "IS NULL"
            if self._is("keyword", "NOT"):
                self._advance()
                op = "IS NOT NULL"
            self._expect("keyword", "NULL", "NULL")
            return Compare(field, op, None, pos)
        self._fail("a comparison (=, !=, <, <=, >, >=, IN, LIKE, IS NULL)")
        raise AssertionError  # unreachable


def parse_filter(source: str) -> Expr:
    """Parse a filter into its AST. Raises ``FilterError`` (position and expectation)."""
    if not isinstance(source, str):
        raise FilterError("a filter must be a string")
    return _Parser(source).parse()


def parse_order_by(spec: str) -> tuple[tuple[str, ...], bool]:
    """Parse ``"<field> [ASC|DESC]"`` (or ``"-<field>"`` for descending) into (field path,
    descending). Raises ``FilterError``."""
    text = spec.strip()
    descending = False
    if text.startswith("-"):
        descending, text = True, text[1:]
    parser = _Parser(text)
    field, _ = parser._field()
    if parser._is("ident") and str(parser.tok.value).upper() in ("ASC", "DESC"):
        descending = str(parser._advance().value).upper() == "DESC"
    if not parser._is("eof"):
        parser._fail("ASC, DESC or end of the order")
    return field, descending
