"""The metatrail exception tree.

Every error metatrail raises on purpose is a ``MetatrailError``; third-party errors are
translated at the boundary with ``raise ... from exc`` so callers catch one family::

    MetatrailError
    ├── ConfigError            a setting has a bad value (names the variable)
    ├── EventValidationError   an event does not match the contract (names the field)
    ├── StoreError             the metadata store failed
    │   ├── TransientStoreError    retrying the same work may succeed (dropped connection,
    │   │                          deadlock, lock timeout, disk full, server restart)
    │   ├── StoreNotFoundError     no metatrail store at the URL yet (a read created nothing)
    │   └── StoreRejectedError     the store refuses a value the work carries (too long,
    │                              out of range, invalid text): the event is at fault
    ├── TransportError         delivering events failed
    │   └── TransientTransportError  retrying may succeed (broker unreachable, timeout)
    ├── FilterError            a query filter does not parse (names position and expectation)
    ├── SourceError            an import source cannot be read (not a database, not an
    │                          MLMD store, an unsupported schema version, a damaged file)
    └── NotFoundError          a node asked for by id does not exist
        └── AmbiguousIdError   an id prefix matches several nodes (lists candidates)
"""

from __future__ import annotations


class MetatrailError(Exception):
    """Base of every error metatrail raises on purpose."""

    retriable: bool = False


class ConfigError(MetatrailError):
    """A setting has a bad value; the message names the variable."""


class EventValidationError(MetatrailError):
    """An event does not match the contract; the message names what was wrong."""


class StoreError(MetatrailError):
    """The metadata store failed."""


class TransientStoreError(StoreError):
    """A store failure that retrying the same transaction may cure."""

    retriable = True


class StoreNotFoundError(StoreError):
    """The URL holds no metatrail store: no such SQLite file or database, or no metatrail
    tables in it. Raised by reads, which create nothing; the message names the URL (without
    its password) and how to get a store."""


class StoreRejectedError(StoreError):
    """The store refuses a value an event carries (too long, out of range, text it cannot
    hold, a NOT NULL or CHECK constraint): the one store failure that is the event's
    fault, so the event may be isolated and dead-lettered with this reason."""


class TransportError(MetatrailError):
    """Delivering events to the transport failed."""


class TransientTransportError(TransportError):
    """A delivery failure that retrying may cure (broker down, timeout)."""

    retriable = True


class FilterError(MetatrailError):
    """A query's filter, ordering, cursor or limit is malformed; the message names the
    position and expectation. ``param`` names the request parameter at fault when the
    error is about one (``"cursor"``, ``"max_hops"``, ``"limit"``), so that each interface
    can name its own spelling of it (the CLI's ``--hops``); ``detail`` is the message
    without that name."""

    def __init__(self, message: str, position: int | None = None, param: str | None = None) -> None:
        super().__init__(f"{param}: {message}" if param else message)
        self.position = position
        self.param = param
        self.detail = message


class SourceError(MetatrailError):
    """A store to import from cannot be read; the message says what it is instead."""


class NotFoundError(MetatrailError):
    """A node asked for by id does not exist in the store."""


class AmbiguousIdError(NotFoundError):
    """An id prefix matches more than one node; ``candidates`` lists (kind, id, name) of
    some of them, for the user to pick from (``more``: others exist)."""

    def __init__(self, prefix: str, candidates: list[tuple[str, str, str | None]], more: bool = False) -> None:
        listed = ", ".join(
            f"{kind} {node_id}" + (f" ({name})" if name else "") for kind, node_id, name in candidates
        )
        tail = " and more: give more characters" if more else ""
        super().__init__(f"id prefix {prefix!r} is ambiguous: it matches {listed}{tail}")
        self.prefix = prefix
        self.candidates = candidates
