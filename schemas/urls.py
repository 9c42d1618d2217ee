"""Showing a store or broker URL without its password: the one helper for every message,
log line and printout that names a URL (the producer shows the store URL too, so this
lives in the contract package and needs no SQLAlchemy)."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode

MASK = "***"
#: ``scheme://user:password@rest``: the password runs to the last ``@`` before the path.
_CREDENTIALS = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/?#@]*):(?P<password>[^/?#]*)@")
#: Query parameters that carry a password in some drivers' URLs.
_SECRET_PARAMS = frozenset({"password", "passwd", "pwd", "sslpassword"})


def mask_url(url: str) -> str:
    """``url`` with its password (in the authority or a ``password=`` query parameter)
    replaced by ``***``. Any other text comes back unchanged. Never raises."""
    text = str(url)
    text = _CREDENTIALS.sub(lambda m: f"{m.group('head')}:{MASK}@", text, count=1)
    head, sep, query = text.partition("?")
    if not sep:
        return text
    try:
        pairs = parse_qsl(query, keep_blank_values=True)
    except ValueError:
        return head + sep + MASK
    if not any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
        return text
    masked = [(k, MASK if k.lower() in _SECRET_PARAMS else v) for k, v in pairs]
    return head + sep + urlencode(masked, safe="*")


def secrets_of(url: str) -> list[str]:
    """The password(s) ``url`` carries, as written and decoded, for scrubbing them from
    third-party messages that may quote the URL."""
    found: list[str] = []
    match = _CREDENTIALS.match(str(url))
    if match and match.group("password"):
        found.append(match.group("password"))
    _, _, query = str(url).partition("?")
    try:
        found.extend(v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() in _SECRET_PARAMS and v)
    except ValueError:
        pass
    return sorted({s for raw in found for s in (raw, unquote(raw)) if s}, key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (e.g. a driver's error message) with the URL masked and every password of
    ``url`` replaced by ``***``."""
    out = str(text).replace(str(url), mask_url(url))
    for secret in secrets_of(url):
        out = out.replace(secret, MASK)
    return out
