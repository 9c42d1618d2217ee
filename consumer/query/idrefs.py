"""Ids as people type them: a full id, or an unambiguous prefix of one (like git).

Node ids are lower-case UUID texts. A prefix is matched with an index range
(``prefix <= id < successor(prefix)``), which every backend's primary-key index serves
whatever its collation, then checked exactly. UUIDv7 ids (executions, artifacts) begin with
their creation time, so ids made within the same minute share their first eight characters:
a prefix must reach the characters where two ids differ. ``short_ids`` works that out from
the store, for every display (CLI tables, the web UI) to print ids that resolve.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from metatrail.consumer.query.filters import And, Expr, LineageOf, Not, Or, parse_filter
from metatrail.consumer.query.raw import TABLES, Raw, id_cast
from metatrail.consumer.store.batching import chunks
from metatrail.schemas.errors import AmbiguousIdError, NotFoundError

#: Fewest characters accepted as a prefix.
MIN_PREFIX = 4
#: Candidates listed when a prefix is ambiguous.
MAX_CANDIDATES = 10
#: Fewest characters of a short id (git's default abbreviation).
SHORT_MIN = 8
#: Ids per neighbour statement.
_SHORT_CHUNK = 100
_ID_TEXT = re.compile(r"^[0-9a-f-]+$")
_FULL_LEN = 36


@dataclass(frozen=True)
class Match:
    kind: str
    id: str
    name: str | None


def _successor(prefix: str) -> str | None:
    """The least text greater than every text starting with ``prefix`` (hex digits
    incremented with carry; hyphens stay), or None when there is none (all ``f``)."""
    chars = list(prefix)
    for i in range(len(chars) - 1, -1, -1):
        c = chars[i]
        if c == "-":
            continue
        if c != "f":
            chars[i] = "0123456789abcdef"[int(c, 16) + 1]
            return "".join(chars[: i + 1])
        chars[i] = "0"
    return None


def normalise(ref: str) -> str:
    """The id text a user typed, trimmed and lower-cased; raises ``NotFoundError`` when it
    cannot be (a prefix of) an id."""
    text = ref.strip().lower()
    if not _ID_TEXT.match(text) or len(text) > _FULL_LEN:
        raise NotFoundError(f"{ref!r} is not an id or id prefix (hex digits and hyphens)")
    if len(text) < _FULL_LEN and len(text.replace("-", "")) < MIN_PREFIX:
        raise NotFoundError(f"id prefix {ref!r} is too short: give at least {MIN_PREFIX} characters")
    return text


def find_matches(raw: Raw, ref: str, kinds: tuple[str, ...], limit: int = MAX_CANDIDATES + 1) -> list[Match]:
    """Nodes of ``kinds`` whose id is ``ref`` or starts with it, at most ``limit``."""
    text = normalise(ref)
    found: list[Match] = []
    for kind in kinds:
        table = TABLES[kind][0]
        if len(text) == _FULL_LEN:
            rows = raw.rows(f"SELECT id, name FROM {table} WHERE id = ?", [text])
        else:
            high = _successor(text)
            where, params = ("id >= ?", [text]) if high is None else ("id >= ? AND id < ?", [text, high])
            rows = raw.rows(f"SELECT id, name FROM {table} WHERE {where} ORDER BY id LIMIT {int(limit)}", params)
        found.extend(Match(kind, str(r[0]), r[1]) for r in rows if str(r[0]).startswith(text))
    return found[:limit]


def resolve(raw: Raw, ref: str, kinds: tuple[str, ...]) -> Match:
    """The one node of ``kinds`` that ``ref`` names. Raises ``NotFoundError`` when none
    does, ``AmbiguousIdError`` (listing candidates) when several do."""
    matches = find_matches(raw, ref, kinds)
    if not matches:
        others = tuple(k for k in TABLES if k not in kinds)
        elsewhere = find_matches(raw, ref, others, limit=2) if others else []
        what = " or ".join(kinds) if others else "artifact, execution or context"
        if len(elsewhere) == 1:
            found = elsewhere[0].kind
            raise NotFoundError(f"{ref!r} is {_article(found)} {found}, not {_article(what)} {what}")
        raise NotFoundError(f"no {what} with id {ref!r}")
    if len(matches) > 1:
        raise _ambiguous(ref, matches)
    return matches[0]


def full_id(raw: Raw, ref: str, kinds: tuple[str, ...]) -> str:
    """The full id ``ref`` names: a full id text as it is (no query; callers report a
    missing node their own way), a prefix resolved as ``resolve`` does."""
    text = ref.strip().lower()
    if len(text) == _FULL_LEN and _ID_TEXT.match(text):
        return text
    return resolve(raw, ref, kinds).id


def context_ref(raw: Raw, ref: str) -> str:
    """A context named by name or id, for options that take either: a name or full id
    stays as given; otherwise an unambiguous prefix of a context id becomes that id (an
    ambiguous one raises ``AmbiguousIdError``; anything else stays as given, matching
    nothing)."""
    text = ref.strip().lower()
    if len(text) == _FULL_LEN or not _ID_TEXT.match(text) or len(text.replace("-", "")) < MIN_PREFIX:
        return ref
    if raw.rows("SELECT 1 FROM mt_contexts WHERE name = ?", [ref]):
        return ref
    matches = find_matches(raw, ref, ("context",))
    if len(matches) > 1:
        raise _ambiguous(ref, matches)
    return matches[0].id if matches else ref


def lineage_refs(raw: Raw, filter: str | None) -> tuple[tuple[str, str], ...]:
    """(prefix as written, full id) for each id prefix in the filter's ``upstream_of`` /
    ``downstream_of``, for the compiler to use (a tuple: part of a statement cache key).
    A prefix of no node stays unresolved (the predicate then matches nothing, as an
    unknown full id does); an ambiguous one raises ``AmbiguousIdError``. Parses only
    filters that mention a lineage predicate; ``FilterError`` for a malformed one."""
    if not filter or "_of" not in filter:
        return ()
    found: list[tuple[str, str]] = []
    for ref in dict.fromkeys(_lineage_ids(parse_filter(filter))):
        if len(ref) == _FULL_LEN:
            continue
        try:
            found.append((ref, resolve(raw, ref, ("artifact", "execution")).id))
        except AmbiguousIdError:
            raise
        except NotFoundError:
            continue
    return tuple(found)


def _lineage_ids(expr: Expr) -> list[str]:
    if isinstance(expr, LineageOf):
        return [expr.node_id]
    if isinstance(expr, (And, Or)):
        return [i for item in expr.items for i in _lineage_ids(item)]
    if isinstance(expr, Not):
        return _lineage_ids(expr.item)
    return []


def _ambiguous(ref: str, matches: list[Match]) -> AmbiguousIdError:
    listed = [(m.kind, m.id, m.name) for m in matches[:MAX_CANDIDATES]]
    return AmbiguousIdError(ref, listed, more=len(matches) > MAX_CANDIDATES)


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def short_ids(raw: Raw, ids: Collection[str], min_len: int = SHORT_MIN) -> dict[str, str]:
    """id -> the shortest prefix of it (at least ``min_len`` characters) that no other node
    id of any kind starts with, so that it resolves back to this id (while no new id comes
    to share it). Ids need not exist.

    The id sharing the longest prefix with ``x`` is next to ``x`` in sorted order, so the
    greatest id below and the least id above ``x`` in each node table decide: the short
    id goes one character past the longer common prefix. Six primary-key probes per id
    (each one descent of the index, any collation), in one statement per 100 ids.
    """
    wanted = sorted({i for i in ids if i})
    neighbours: dict[str, set[str]] = {i: set() for i in wanted}
    for part in chunks(wanted, _SHORT_CHUNK):
        sql, params = _neighbour_statement(raw.dialect, part)
        for row in raw.rows(sql, params):
            neighbours[str(row[0])].update(str(n) for n in row[1:] if n is not None)
    return {i: _shortest(i, neighbours[i], min_len) for i in wanted}


def _neighbour_statement(dialect: str, ids: list[str]) -> tuple[str, list[str]]:
    """Rows (id, then its two neighbours in each node table) for ``ids``.

    SQLite and PostgreSQL probe the index once per row of a derived table of the ids;
    MariaDB/MySQL would scan the index for such a correlated bound, but resolve each
    probe by one descent at optimisation time when its bound is a constant, so there
    every id gets its own select (parsing them costs about 80 µs per id)."""
    cast = f"CAST(? AS {id_cast(dialect)})"
    if dialect in ("mysql", "mariadb"):
        probes = [cast] + [
            f"(SELECT MAX(id) FROM {t} WHERE id < ?), (SELECT MIN(id) FROM {t} WHERE id > ?)" for t, _ in TABLES.values()
        ]
        select = "SELECT " + ", ".join(probes)
        return " UNION ALL ".join([select] * len(ids)), [i for i in ids for _ in range(1 + 2 * len(TABLES))]
    probes = ["v.id"] + [
        f"(SELECT t.id FROM {t} t WHERE t.id < v.id ORDER BY t.id DESC LIMIT 1), "
        f"(SELECT t.id FROM {t} t WHERE t.id > v.id ORDER BY t.id LIMIT 1)" for t, _ in TABLES.values()
    ]
    derived = " UNION ALL ".join([f"SELECT {cast} AS id"] * len(ids))
    return f"SELECT {', '.join(probes)} FROM ({derived}) v", list(ids)


def _shortest(node_id: str, others: Collection[str], min_len: int) -> str:
    shared = max((_common(node_id, o) for o in others), default=0)
    n = max(min_len, shared + 1)
    while n < len(node_id) and node_id[n - 1] == "-":  # never end on a hyphen
        n += 1
    return node_id[:n]


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
