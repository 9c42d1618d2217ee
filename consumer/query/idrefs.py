"""Ids as people type them: a full id, or an unambiguous prefix of one (like git).

Node ids are lower-case UUID texts. A prefix is matched with an index range
(``prefix <= id < successor(prefix)``), which every backend's primary-key index serves
whatever its collation, then checked exactly. UUIDv7 ids (executions, artifacts) begin with
their creation time, so ids made within the same minute share their first eight characters:
a prefix must reach the characters where two ids differ, which ``short_ids`` in the display
code works out from the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from metatrail.consumer.query.raw import TABLES, Raw
from metatrail.schemas.errors import AmbiguousIdError, NotFoundError

#: Fewest characters accepted as a prefix.
MIN_PREFIX = 4
#: Candidates listed when a prefix is ambiguous.
MAX_CANDIDATES = 10
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
        raise AmbiguousIdError(ref, [(m.kind, m.id, m.name) for m in matches[:MAX_CANDIDATES]])
    return matches[0]


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"
