"""Redaction: values whose names look secret never leave the process.

A parameter or property (of an execution, artifact or context) whose name contains one of
the words of ``METATRAIL_REDACT`` (default ``password, passwd, secret, token, api_key,
apikey, credential, private_key``; any case; ``db_password``, ``api_token`` and
``HF_TOKEN`` all match) is recorded as ``"***"``, and its name is listed in the custom
property ``redacted`` of the same node, so a reader sees that a value was withheld. Keys
of nested dicts inside a value are looked at too (down to ``MAX_DEPTH`` levels) and listed
as ``outer.inner``. ``METATRAIL_REDACT=off`` records every value as it is.

It is applied where values are typed, before anything is spooled: ``@track`` parameters
(defaults included) and every recorder entry point, ``log_params``, artifact and context
properties. The secret values of an execution are also replaced by ``"***"`` in the
message and traceback of its failure. Note that a word matches inside longer names: with
the defaults a parameter ``max_tokens`` is redacted too (set ``METATRAIL_REDACT`` to a list
without ``token``, or pass ``exclude=``). The execution fingerprint (a sha256 used for
caching) is still computed over the real values, so caching stays exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from metatrail.producer import emitter
from metatrail.schemas.errors import MetatrailError
from metatrail.schemas.settings import Settings
from metatrail.schemas.values import Properties, PropertyValue

#: What a redacted value is recorded as.
MARK = "***"
#: The custom property listing the redacted names of a node.
FLAG = "redacted"
#: How deep nested values are searched for secret keys.
MAX_DEPTH = 100
#: Secret texts shorter than this are not searched for in error messages (a one-letter
#: "secret" would blank out the whole traceback).
MIN_SCRUB_CHARS = 3

_MARKED = PropertyValue(type="string", value=MARK)
#: The default words, when the environment's settings are broken (reported elsewhere).
_FALLBACK = Settings.model_construct(redact=str(Settings.model_fields["redact"].default))
#: (the settings they come from, the words, name -> secret?) for the current settings.
_state: tuple[object, tuple[str, ...], dict[str, bool]] = (None, (), {})


class Redacted(NamedTuple):
    """Values with the secret ones replaced, the names replaced, and the secret texts."""

    values: Properties
    names: list[str]
    secrets: list[str]


def _words() -> tuple[tuple[str, ...], dict[str, bool]]:
    """The current settings' words, and the memo of names already judged under them."""
    global _state
    current = emitter.current  # the hot path: no call while the emitter stands
    state = _state
    if current is not None and state[0] is current.settings:
        return state[1], state[2]
    try:
        settings = emitter.settings()
    except MetatrailError:  # a bad environment is reported by the recorder; redact anyway
        settings = _FALLBACK
    if state[0] is not settings:
        state = _state = (settings, settings.redact_patterns, {})
    return state[1], state[2]


def _secret(name: str, words: tuple[str, ...], memo: dict[str, bool]) -> bool:
    found = memo.get(name)
    if found is None:
        lowered = name.lower()
        found = any(w in lowered for w in words)
        if len(memo) > 10_000:
            memo.clear()
        memo[name] = found
    return found


def redact(values: Properties) -> Redacted:
    """Replace the secret values of ``values`` (see module doc). Returns ``values`` itself
    when nothing is secret (the common case costs a dict lookup per name)."""
    words, memo = _words()
    if not words or not values:
        return Redacted(values, [], [])
    out: Properties | None = None
    names: list[str] = []
    secrets: list[str] = []
    for name, value in values.items():
        if _secret(name, words, memo):
            replaced: PropertyValue | None = _MARKED
            names.append(name)
            secrets.extend(_texts(value.value))
        elif value.type == "json" and isinstance(value.value, (dict, list)):
            replaced = _nested(name, value.value, words, memo, names, secrets)
        else:
            replaced = None
        if replaced is not None:
            if out is None:
                out = dict(values)
            out[name] = replaced
    return Redacted(values if out is None else out, names, secrets)


def _nested(
    name: str,
    value: Any,
    words: tuple[str, ...],
    memo: dict[str, bool],
    names: list[str],
    secrets: list[str],
) -> PropertyValue | None:
    """The json ``value`` with its secret keys' values replaced, or ``None`` if it has none.
    Iterative (no recursion, whatever the nesting) and copy-on-write along the paths."""
    paths: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        if len(path) >= MAX_DEPTH:
            continue
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(key, str) and _secret(key, words, memo):
                paths.append((*path, key))
                secrets.extend(_texts(child))
            elif isinstance(child, (dict, list)):
                stack.append((child, (*path, key)))
    if not paths:
        return None
    copies: dict[int, Any] = {}
    root = _copy(value, copies)
    for path in paths:
        node = root
        for key in path[:-1]:
            child = _copy(node[key], copies)
            node[key] = child
            node = child
        node[path[-1]] = MARK
        names.append(".".join([name, *(str(k) for k in path)]))
    return PropertyValue(type="json", value=root)


def _copy(container: Any, copies: dict[int, Any]) -> Any:
    """A shallow copy of ``container``, made once per container (by identity)."""
    found = copies.get(id(container))
    if found is None:
        found = copies[id(container)] = (
            dict(container) if isinstance(container, dict) else list(container)
        )
        copies[id(found)] = found  # a copy is its own copy
    return found


def _texts(value: Any) -> list[str]:
    """The texts of the scalars in a secret value (to blank them out of messages)."""
    out: list[str] = []
    stack = [value]
    while stack and len(out) < 1000:
        item = stack.pop()
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, (str, int, float)):
            text = str(item)
            if len(text) >= MIN_SCRUB_CHARS:
                out.append(text)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return out


def flagged(custom: Properties, names: Iterable[str]) -> Properties:
    """``custom`` with ``names`` added to its ``redacted`` list (``custom`` itself when
    ``names`` is empty)."""
    names = list(names)
    if not names:
        return custom
    known = custom.get(FLAG)
    listed = list(known.value) if known is not None and isinstance(known.value, list) else []
    merged = sorted(set(listed) | set(names))
    out = dict(custom)
    out[FLAG] = PropertyValue(type="json", value=merged)
    return out


def _clean(values: Properties, words: tuple[str, ...], memo: dict[str, bool]) -> bool:
    """Whether ``values`` certainly hold nothing to redact (scalars with harmless names):
    the hot path of a tracked call, a dict lookup per name."""
    if not values:
        return True
    for name, value in values.items():
        secret = memo.get(name)
        if secret is None:
            secret = _secret(name, words, memo)
        if secret or value.type == "json":
            return False
    return True


def node(properties: Properties, custom: Properties) -> tuple[Properties, Properties, list[str]]:
    """Redact a node's properties and custom properties together: (properties, custom
    properties flagged with every redacted name, the secret texts). Returns its arguments
    themselves when nothing is secret."""
    current, state = emitter.current, _state  # the hot path: no call while settings stand
    if current is not None and state[0] is current.settings:
        words, memo = state[1], state[2]
    else:
        words, memo = _words()
    if not words or (
        _clean(properties, words, memo) and (not custom or _clean(custom, words, memo))
    ):
        return properties, custom, []
    props = redact(properties)
    extra = redact(custom)
    return (
        props.values,
        flagged(extra.values, [*props.names, *extra.names]),
        [*props.secrets, *extra.secrets],
    )


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``"***"`` (longest first,
    so a secret containing another is blanked whole)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MARK)
    return text

