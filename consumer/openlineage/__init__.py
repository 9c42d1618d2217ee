"""OpenLineage in and out.

In: :mod:`.mapping` turns one OpenLineage event (RunEvent, and the static DatasetEvent and
JobEvent) into metatrail events; every source (``metatrail ingest --format openlineage``,
the ``<prefix>.openlineage`` Kafka topic, the HTTP endpoints) hands raw payloads to the
one apply path (``apply_records`` with ``RawRecord.format = "openlineage"``), so
idempotency, order-insensitivity and dead letters hold as for our own events.
:mod:`.ingest` is the thin wrapper an HTTP endpoint calls.

Out: :mod:`.export` builds RunEvents from the store (``metatrail export --format
openlineage``) and :mod:`.forward` sends them to an OpenLineage endpoint as executions
are recorded (``metatrail forward openlineage URL``).

This package's ``__init__`` imports nothing, so the apply path can import the mapping
without importing the rest.
"""
