"""Versions of the event contract and of the SDK that writes it."""

from __future__ import annotations

from importlib import metadata

#: The schema version this code writes. Bump it when an event's meaning changes.
SCHEMA_VERSION = "1"
#: Every schema version this code can read. An event of any other version is rejected.
SUPPORTED_SCHEMA_VERSIONS: frozenset[str] = frozenset({"1"})


def sdk_version() -> str:
    """The installed metatrail distribution's version, or ``0+unknown`` from a bare checkout."""
    try:
        return metadata.version("metatrail")
    except metadata.PackageNotFoundError:
        return "0+unknown"
