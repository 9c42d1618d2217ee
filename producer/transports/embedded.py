"""The ``embedded`` transport (the zero-configuration default): apply spooled events to the
local store in-process, with the consumer's own apply code.

The consumer is imported lazily (the producer never imports it at module level); without
the service extras the transport raises a non-retriable ``TransportError`` that says what
to install, and the events stay spooled. The store's schema is upgraded once on first use.
Events that fail validation become dead letters in the store, like in the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metatrail.producer.forkguard import store_guard
from metatrail.producer.transports.base import SpooledEvent
from metatrail.schemas.errors import StoreError, TransientStoreError, TransientTransportError, TransportError
from metatrail.schemas.urls import mask_url, scrub


class EmbeddedTransport:
    def __init__(self, store_url: str) -> None:
        self.store_url = store_url
        self._engine: Any = None
        self._apply: Any = None
        self._record: Any = None

    def _ensure(self) -> None:
        if self._engine is not None:
            return
        try:
            from metatrail.consumer.apply import RawRecord, apply_records
            from metatrail.consumer.store.engine import open_engine
            from metatrail.consumer.store.migrate import upgrade
        except ImportError as exc:
            raise TransportError(
                f"the embedded transport needs the consumer (pip install 'metatrail[service]'): {exc}"
            ) from exc
        engine = open_engine(self.store_url)
        try:
            upgrade(engine)
        except Exception as exc:  # concurrent first migrations, a locked file...: retry
            engine.dispose()
            raise TransientTransportError(
                f"cannot prepare the store {mask_url(self.store_url)}: {scrub(str(exc), self.store_url)}"
            ) from exc
        self._engine, self._apply, self._record = engine, apply_records, RawRecord

    @store_guard  # a fork waits for the apply in progress: see producer.forkguard
    def send(self, batch: Sequence[SpooledEvent]) -> None:
        if not batch:
            return
        self._ensure()
        records = [self._record(payload=e.payload, source_key=f"spool:{e.event_id}") for e in batch]
        try:
            self._apply(self._engine, records)
        except TransientStoreError as exc:
            raise TransientTransportError(f"store busy: {scrub(str(exc), self.store_url)}") from exc
        except StoreError as exc:
            raise TransportError(f"store rejected a batch: {scrub(str(exc), self.store_url)}") from exc

    @store_guard
    def close(self, timeout_s: float) -> bool:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        return True
