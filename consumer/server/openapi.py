"""The committed OpenAPI document (``consumer/server/openapi.json``): what clients and the
web UI build on. ``python -m metatrail.consumer.server.openapi`` rewrites it from the app;
a test fails when the app and the file differ."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DOCUMENT = Path(__file__).with_name("openapi.json")


def current_document() -> dict[str, Any]:
    """The app's OpenAPI document (built on an in-memory store: no file, no server)."""
    from metatrail.consumer.query.store import Store
    from metatrail.consumer.server.app import create_app
    from metatrail.consumer.store.engine import open_engine
    from metatrail.schemas.settings import load_settings

    with Store(open_engine("sqlite://"), owns_engine=True) as store:
        app = create_app(load_settings(), store)
        try:
            return app.openapi()
        finally:
            app.state.metatrail.close()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    DOCUMENT.write_text(render(current_document()))
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
