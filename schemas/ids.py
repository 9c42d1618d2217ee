"""Client-side identities (design rule 1): nothing waits for the store to hand out an id.

``new_id()`` gives a time-ordered UUIDv7 for things that are new each time (events,
executions). ``derived_id()`` gives a UUIDv5 for things whose identity follows from what
they are (a context of a type and name, a step, a trigger of a step on given inputs), so
two processes that never talk still agree on the id.
"""

from __future__ import annotations

import random
import threading
import time
import uuid

#: Namespace of every derived id metatrail makes.
NAMESPACE = uuid.UUID("5f1b0c1e-6d0a-4a8e-9b7e-3c2d1e0f4a5b")

_lock = threading.Lock()
_new_uuid = object.__new__
_set_attr = object.__setattr__
_last_ms = 0
_seq = 0


def new_id() -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit unix milliseconds, then a per-millisecond counter
    seeded at random, then random bits. Monotonic within a process, unique across them.
    The random bits come from ``random`` (seeded from ``os.urandom`` at start-up and
    re-seeded in every forked child by CPython): ~1 µs cheaper per id than a syscall."""
    global _last_ms, _seq
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _seq = random.getrandbits(10)
        else:
            _seq += 1
            if _seq > 0xFFF:
                _last_ms += 1
                _seq = 0
            ms = _last_ms
        seq = _seq
    rand = random.getrandbits(62)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | seq << 64 | 0b10 << 62 | rand
    # Same object ``uuid.UUID(int=value)`` builds, without re-checking the bits we just set
    # (a third of this function's cost on the producer's hot path).
    new = _new_uuid(uuid.UUID)
    _set_attr(new, "int", value)
    _set_attr(new, "is_safe", uuid.SafeUUID.unknown)
    return new


def derived_id(kind: str, *parts: object) -> uuid.UUID:
    """A deterministic UUIDv5 from a kind and the parts that identify the thing."""
    return uuid.uuid5(NAMESPACE, "\x1f".join([kind, *(str(p) for p in parts)]))


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
