"""Opaque page tokens: the query layer's keyset cursor, sealed to the query it came from.

A token carries the cursor and a short digest of (resource, filter, order, retired); a
token handed back with a different query is refused (400) instead of silently paging
through the wrong ordering. Tokens stay valid while rows are added: the cursor is a
position in the ordering, not an offset.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json

from metatrail.schemas.errors import FilterError

#: Largest page the list routes return.
MAX_PAGE_SIZE = 1000


def _digest(scope: str) -> str:
    return hashlib.sha256(scope.encode("utf-8")).hexdigest()[:16]


def query_scope(resource: str, filter: str | None, order_by: str | None, include_retired: bool) -> str:
    return json.dumps([resource, filter or "", order_by or "", include_retired])


def encode_page_token(cursor: str, scope: str) -> str:
    raw = json.dumps({"c": cursor, "q": _digest(scope)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, scope: str) -> str:
    """The cursor inside ``token``. Raises ``FilterError`` for a token this query did not
    hand out."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        cursor, digest = data["c"], data["q"]
        if not isinstance(cursor, str) or not isinstance(digest, str):
            raise ValueError("malformed")
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise FilterError("page_token is not a token this server handed out") from exc
    if digest != _digest(scope):
        raise FilterError("page_token belongs to another query (resource, filter, order_by or include_retired differ)")
    return cursor
