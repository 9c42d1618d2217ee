"""``metatrail serve``: the team server (FastAPI on uvicorn). ``create_app(settings, store)``
builds the ASGI app; ``serve`` runs it (see :mod:`metatrail.consumer.server.runner`).

``create_app`` and ``API_PREFIX`` are imported on first use: a process that needs one
module of the package (an apply process of ``appliers``) does not build the whole app's
imports (the web UI's included)."""

from __future__ import annotations

from typing import Any

__all__ = ["API_PREFIX", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from metatrail.consumer.server import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
