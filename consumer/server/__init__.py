"""``metatrail serve``: the team server (FastAPI on uvicorn). ``create_app(settings, store)``
builds the ASGI app; ``serve`` runs it (see :mod:`metatrail.consumer.server.runner`)."""

from metatrail.consumer.server.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
