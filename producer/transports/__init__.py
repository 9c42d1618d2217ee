"""Transports: ``embedded`` (default), ``kafka``, ``http`` and ``file``, behind one ``Transport`` protocol."""

from __future__ import annotations

from metatrail.producer.transports.base import SpooledEvent, Transport
from metatrail.schemas.settings import Settings

__all__ = ["SpooledEvent", "Transport", "make_transport"]


def make_transport(settings: Settings) -> Transport:
    """The transport ``settings.transport`` names. Cheap: connections open on first send."""
    if settings.transport == "kafka":
        from metatrail.producer.transports.kafka import KafkaTransport

        return KafkaTransport(settings)
    if settings.transport == "http":
        from metatrail.producer.transports.http import HttpTransport

        return HttpTransport(settings)
    if settings.transport == "file":
        from metatrail.producer.transports.file import FileTransport

        return FileTransport(settings.file_path)
    from metatrail.producer.transports.embedded import EmbeddedTransport

    return EmbeddedTransport(settings.store_url)
