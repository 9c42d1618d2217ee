"""API tokens: created once (shown once), stored as their SHA-256, revoked by id.

A token is ``mt_`` followed by 32 random bytes (URL-safe base64): long and random enough
that a plain SHA-256 is the right hash (a slow password hash protects guessable secrets;
this one is not guessable). The token never reaches the store or a log in clear; only
``create_token``'s caller ever sees it.

Scopes nest: ``read`` (GET), ``write`` (read + ``POST /events``, retire), ``admin``
(write + dead-letter replay, tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from sqlalchemy import Engine, func, select, update

from metatrail.consumer.store.engine import session_scope
from metatrail.consumer.store.models import TokenRow
from metatrail.schemas.errors import FilterError, NotFoundError
from metatrail.schemas.ids import new_id

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
PREFIX = "mt_"


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: never the token itself, nor its hash."""

    id: str
    name: str | None
    scope: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def allows(granted: str, needed: str) -> bool:
    """Whether a token of scope ``granted`` may do what needs ``needed``."""
    return SCOPES.index(granted) >= SCOPES.index(needed)  # type: ignore[arg-type]


def create_token(engine: Engine, scope: str, name: str | None = None) -> tuple[str, TokenInfo]:
    """A new token of ``scope``: returns (the token, shown once; its listing). Raises
    ``FilterError`` for an unknown scope."""
    if scope not in SCOPES:
        raise FilterError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    token = PREFIX + secrets.token_urlsafe(32)
    info = TokenInfo(str(new_id()), name, scope, datetime.now(UTC), None)
    with session_scope(engine) as session:
        session.add(TokenRow(id=info.id, name=name, scope=scope, token_hash=token_hash(token),
                             created_at=info.created_at, revoked_at=None))
    return token, info


def list_tokens(engine: Engine, *, include_revoked: bool = False) -> list[TokenInfo]:
    """Tokens, oldest first."""
    query = select(TokenRow).order_by(TokenRow.created_at, TokenRow.id)
    if not include_revoked:
        query = query.where(TokenRow.revoked_at.is_(None))
    with session_scope(engine, write=False) as session:
        return [_info(row) for row in session.scalars(query)]


def revoke_token(engine: Engine, ref: str) -> TokenInfo:
    """Revoke the token whose id is ``ref`` or starts with it (at least 4 characters).
    Idempotent: revoking a revoked token changes nothing. Raises ``NotFoundError``."""
    ref = ref.strip().lower()
    if len(ref) < 4:
        raise NotFoundError(f"token id prefix {ref!r} is too short: give at least 4 characters")
    with session_scope(engine) as session:
        rows = list(session.scalars(select(TokenRow).where(TokenRow.id.startswith(ref, autoescape=True)).limit(2)))
        if not rows:
            raise NotFoundError(f"no token with id {ref!r}")
        if len(rows) > 1:
            raise NotFoundError(f"token id prefix {ref!r} is ambiguous: give more characters")
        row = rows[0]
        if row.revoked_at is None:
            session.execute(update(TokenRow).where(TokenRow.id == row.id).values(revoked_at=datetime.now(UTC)))
            session.flush()
            session.refresh(row)
        return _info(row)


def active_token_count(engine: Engine) -> int:
    with session_scope(engine, write=False) as session:
        return int(session.scalar(select(func.count()).select_from(TokenRow).where(TokenRow.revoked_at.is_(None))) or 0)


def lookup(engine: Engine, token: str) -> TokenInfo | None:
    """The active token whose hash matches ``token``, or None (unknown or revoked)."""
    digest = token_hash(token)
    with session_scope(engine, write=False) as session:
        row = session.scalars(select(TokenRow).where(TokenRow.token_hash == digest)).first()
        if row is None or row.revoked_at is not None or not hmac.compare_digest(row.token_hash, digest):
            return None
        return _info(row)


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(row.id, row.name, row.scope, row.created_at, row.revoked_at)
