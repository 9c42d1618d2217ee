"""Ids of imported MLMD nodes and events, in runs of consecutive MLMD ids.

A hash of (store, kind, MLMD id) would scatter a page of 1,000 imported nodes over
1,000 places of every index they enter (ids, properties, edges, applied events): each
commit then writes ~1,000 index pages per index, SQLite's commit work and PostgreSQL's
index writes. These ids are UUIDv8 (RFC 9562's version for ids laid out by their maker)
whose first 32 bits hash the store, the kind and the MLMD id divided by 16, then 4 bits
hold the MLMD id's last hex digit: 16 consecutive MLMD ids share their head and land on
one index page, and an id still differs from the others in its first ten characters, so
short ids (``metatrail ls``) stay short. The other 86 bits are the MLMD id XOR a hash of
the store and the kind (nodes: distinct MLMD ids give distinct ids, without a hash per
node) or a hash of the source rows an event was made from (events). Deterministic, so
importing the same store again finds the same nodes and events; a node that changed in
MLMD gives a new event.

Stores imported before this layout have UUIDv5 ids (``derived_id`` of the same parts):
an import into a store that holds such nodes of the source (``LegacyIds``) keeps deriving
them that way, so that re-importing it still finds what it imported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Protocol
from uuid import UUID

from metatrail.schemas.ids import derived_ids

#: Consecutive MLMD ids that share an id's head: 2 ** RUN_BITS.
RUN_BITS = 4
_RUN_MASK = (1 << RUN_BITS) - 1
_LOW_12 = 0xFFF
_LOW_62 = (1 << 62) - 1
#: UUID version 8 and the RFC 9562 variant, in place.
_VERSION_8 = 8 << 76
_VARIANT = 0b10 << 62
_UINT64 = (1 << 64) - 1


class _Series:
    """The ids of one store's nodes (or events) of one kind. Hashing starts from a copy
    of a hash of the common prefix, and the head of the last run is kept: pages come in
    MLMD id order, so 15 ids in 16 reuse it."""

    __slots__ = ("_head", "_heads", "_mask", "_rests", "_run")

    def __init__(self, prefix: str) -> None:
        self._heads = hashlib.blake2b(f"{prefix}\x1frun\x1f".encode(), digest_size=4)
        self._rests = hashlib.blake2b(f"{prefix}\x1fid\x1f".encode(), digest_size=11)
        self._mask = int.from_bytes(self._rests.digest(), "big") >> 2  # 86 bits
        self._run: int | None = None
        self._head = 0

    def node(self, mlmd_id: int) -> UUID:
        return self._uuid(mlmd_id, self._mask ^ (mlmd_id & _UINT64))

    def event(self, mlmd_id: int, content: object) -> UUID:
        h = self._rests.copy()
        h.update(repr((mlmd_id, content)).encode("utf-8", "surrogatepass"))
        return self._uuid(mlmd_id, int.from_bytes(h.digest(), "big") >> 2)

    def _uuid(self, mlmd_id: int, rest: int) -> UUID:
        """``rest`` (86 bits) after the head of ``mlmd_id``'s run and its last hex digit."""
        run = mlmd_id >> RUN_BITS
        if run != self._run:
            h = self._heads.copy()
            h.update(str(run).encode())
            self._run, self._head = run, int.from_bytes(h.digest(), "big")
        head = self._head << RUN_BITS | (mlmd_id & _RUN_MASK)
        return UUID(int=head << 92 | (rest >> 74) << 80 | _VERSION_8 | ((rest >> 62) & _LOW_12) << 64
                    | _VARIANT | (rest & _LOW_62))


class SourceIds:
    """The ids of one MLMD store's (``identity``) nodes and events."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self._nodes: dict[str, _Series] = {}
        self._events: dict[str, _Series] = {}

    def node(self, kind: str, mlmd_id: int) -> UUID:
        """The id of the ``kind`` ('artifact', 'execution', 'context') node ``mlmd_id``."""
        series = self._nodes.get(kind)
        if series is None:
            series = self._nodes[kind] = _Series(f"{self.identity}\x1fnode\x1f{kind}")
        return series.node(mlmd_id)

    def event(self, kind: str, mlmd_id: int, content: tuple[object, ...]) -> UUID:
        """The id of the event made of ``content`` (the source rows) about the MLMD
        ``kind`` (a node kind, 'type', 'attribution', 'association') ``mlmd_id``."""
        series = self._events.get(kind)
        if series is None:
            series = self._events[kind] = _Series(f"{self.identity}\x1fevent\x1f{kind}")
        return series.event(mlmd_id, content)


class LegacyIds:
    """The ids of one MLMD store's nodes and events as imports made them before
    ``SourceIds``: ``derived_id("mlmd", identity, kind, MLMD id)`` for nodes, and for an
    event a ``derived_id`` of its kind, MLMD id and a digest of its source rows."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self._nodes: dict[str, Callable[[object], UUID]] = {}
        self._events = derived_ids("mlmd-event", identity)

    def node(self, kind: str, mlmd_id: int) -> UUID:
        derive = self._nodes.get(kind)
        if derive is None:
            derive = self._nodes[kind] = derived_ids("mlmd", self.identity, kind)
        return derive(mlmd_id)

    def event(self, kind: str, mlmd_id: int, content: tuple[object, ...]) -> UUID:
        digest = hashlib.blake2b(repr(content).encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
        return self._events(f"{kind}\x1f{mlmd_id}\x1f{digest}")


class Ids(Protocol):
    """What the converter asks of an id layout."""

    def node(self, kind: str, mlmd_id: int) -> UUID: ...

    def event(self, kind: str, mlmd_id: int, content: tuple[object, ...]) -> UUID: ...
