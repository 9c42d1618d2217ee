"""Client-side identities (design rule 1): nothing waits for the store to hand out an id.

``new_id()`` gives a time-ordered UUIDv7 for things that are new each time (events,
executions). ``derived_id()`` gives a UUIDv5 for things whose identity follows from what
they are (a context of a type and name, a step, a trigger of a step on given inputs), so
two processes that never talk still agree on the id.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import uuid
from collections.abc import Callable

#: Namespace of every derived id metatrail makes.
NAMESPACE = uuid.UUID("5f1b0c1e-6d0a-4a8e-9b7e-3c2d1e0f4a5b")
_NAMESPACE_BYTES = NAMESPACE.bytes
_sha1 = hashlib.sha1
#: A UUIDv5's version (5) and RFC 4122 variant bits, as ``uuid.UUID(version=5)`` sets them.
_V5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_V5_SET = (5 << 76) | (0x8000 << 48)

_lock = threading.Lock()
#: Our own generator, seeded from the OS: the user's ``random`` (or numpy) state is never
#: read or advanced, so recording does not change a seeded program's results, and
#: processes that all call ``random.seed(42)`` still draw different ids. A forked child
#: reseeds it (see ``_after_fork_in_child``), as CPython does for the global generator.
_random = random.Random(os.urandom(32))
_new_uuid = object.__new__
_set_attr = object.__setattr__
_getrandbits = _random.getrandbits
_time_ns = time.time_ns
_UNKNOWN = uuid.SafeUUID.unknown
_LOW_48 = (1 << 48) - 1
_VARIANT = 0b10 << 62
_HEX = "0123456789abcdef"
_HEX2 = [f"{i:02x}" for i in range(256)]
_last_ms = 0
_seq = 0
#: (unix ms, the text of a UUIDv7 up to its counter: ``tttttttt-tttt-7``), read as one tuple.
_prefix: tuple[int, str] = (-1, "")


def _reserve(count: int) -> tuple[int, int]:
    """(unix ms, first counter value) of ``count`` (at most 4096) consecutive new ids.

    The 12-bit counter is seeded at random (10 bits) when the millisecond changes and
    incremented otherwise; when it would overflow, the ids borrow the next millisecond.
    So ids are strictly increasing within a process even if the clock steps back."""
    global _last_ms, _seq
    # The clock is read outside the lock: a reading older than the last id's only means
    # that these ids take its millisecond and the next counter values.
    now = _time_ns() // 1_000_000
    lock = _lock  # one object for acquire and release (a forked child gets a new lock)
    lock.acquire()
    try:
        ms = _last_ms
        if now > ms:
            ms = now
            seq = _getrandbits(10)
        else:
            seq = _seq + 1
        if seq + count > 0x1000:
            ms += 1
            seq = 0
        _last_ms = ms
        _seq = seq + count - 1
    finally:
        lock.release()
    return ms, seq


def _uuid(value: int) -> uuid.UUID:
    # Same object ``uuid.UUID(int=value)`` builds, without re-checking the bits we just set
    # (a third of the cost of an id on the producer's hot path).
    new = _new_uuid(uuid.UUID)
    _set_attr(new, "int", value)
    _set_attr(new, "is_safe", _UNKNOWN)
    return new


def _text_prefix(ms: int) -> str:
    global _prefix
    cached = _prefix
    if cached[0] == ms:
        return cached[1]
    hex_ms = f"{ms & _LOW_48:012x}"
    text = f"{hex_ms[:8]}-{hex_ms[8:]}-7"
    _prefix = (ms, text)
    return text


def new_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit unix milliseconds, then a per-millisecond counter
    seeded at random, then random bits. Monotonic within a process, unique across them.
    The random bits come from a private generator seeded from ``os.urandom`` at start-up
    and reseeded in every forked child: ~1 µs cheaper per id than a syscall, and it never
    touches the user's ``random`` state."""
    ms, seq = _reserve(1)
    return _uuid((ms & _LOW_48) << 80 | 0x7 << 76 | seq << 64 | _VARIANT | _getrandbits(62))


def new_id_texts(count: int) -> list[str]:
    """``count`` (at most 4096) new ids, in order, as ``str(new_id())`` would write them: the
    events' wire form, without building UUIDs. One clock read, one lock and one random draw
    for the batch: each id has its own counter value and the batch shares its 62 random bits
    (two processes' ids collide only if their millisecond, counter AND random bits match)."""
    ms, seq = _reserve(count)
    prefix = _text_prefix(ms)
    rand = (_VARIANT | _getrandbits(62)).to_bytes(8, "big").hex()
    tail = f"-{rand[:4]}-{rand[4:]}"
    # (hex digits by table: formatting ints costs more than the rest of an id here)
    if count == 1:
        return [prefix + _HEX[seq >> 8] + _HEX2[seq & 0xFF] + tail]
    return [prefix + _HEX[s >> 8] + _HEX2[s & 0xFF] + tail for s in range(seq, seq + count)]


def jitter(low: float, high: float) -> float:
    """A uniform draw in [low, high] from the private generator: retry back-offs use it
    (tenacity's jittered waits draw from the global ``random``, which would shift a seeded
    program's stream whenever a delivery or an apply is retried)."""
    return low + (high - low) * _random.random()


def derived_id(kind: str, *parts: object) -> uuid.UUID:
    """A deterministic UUIDv5 from a kind and the parts that identify the thing: exactly
    ``uuid.uuid5(NAMESPACE, "\\x1f".join([kind, *map(str, parts)]))``, built without
    ``uuid.UUID``'s argument checks (importers derive one per node and event)."""
    name = "\x1f".join([kind, *[p if isinstance(p, str) else str(p) for p in parts]])
    value = int.from_bytes(_sha1(_NAMESPACE_BYTES + name.encode("utf-8")).digest()[:16], "big")
    return _uuid((value & _V5_CLEAR) | _V5_SET)


def derived_ids(kind: str, *prefix: object) -> Callable[[object], uuid.UUID]:
    """``f(last) == derived_id(kind, *prefix, last)``, for deriving many ids that share a
    prefix (an importer's nodes of one store): the prefix is hashed once."""
    head = _sha1(_NAMESPACE_BYTES + "\x1f".join([kind, *(str(p) for p in prefix), ""]).encode("utf-8"))

    def derive(last: object) -> uuid.UUID:
        h = head.copy()
        h.update((last if isinstance(last, str) else str(last)).encode("utf-8"))
        return _uuid((int.from_bytes(h.digest()[:16], "big") & _V5_CLEAR) | _V5_SET)

    return derive


def context_id(type_name: str, name: str) -> uuid.UUID:
    """The id of the context of this type and name, the same in every process."""
    return derived_id("context", type_name, name)


def step_id(pipeline: str | None, name: str) -> uuid.UUID:
    """The id of a step in a pipeline."""
    return derived_id("step", pipeline or "", name)


def trigger_id(step: uuid.UUID, input_ids: dict[str, uuid.UUID]) -> uuid.UUID:
    """Trigger id = hash(step, input artifact ids): a second request for the same work has
    the same id, which a unique key turns into a no-op (design rule 7)."""
    parts = [f"{k}={input_ids[k]}" for k in sorted(input_ids)]
    return derived_id("trigger", step, *parts)


def _after_fork_in_child() -> None:
    """A child must not repeat its parent's ids: new seed, and a lock no parent thread holds."""
    global _lock
    _lock = threading.Lock()
    _random.seed(os.urandom(32))


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
