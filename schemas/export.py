"""Export the event contract as JSON Schema files (``python -m metatrail.schemas.export``).

The files under ``schemas/json/`` are for producers in other languages and for review of
contract changes; a test fails when they drift from the models.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from metatrail.schemas.events import EVENT_MODELS, Event
from metatrail.schemas.version import SCHEMA_VERSION

JSON_DIR = Path(__file__).parent / "json"


def rendered_schemas() -> dict[str, str]:
    """File name -> JSON text of every schema file, as the models define them today."""
    files: dict[str, Any] = {
        "event.schema.json": TypeAdapter(Event).json_schema(mode="validation"),
    }
    for kind, model in sorted(EVENT_MODELS.items()):
        files[f"{kind}.schema.json"] = model.model_json_schema(mode="validation")
    for schema in files.values():
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["x-metatrail-schema-version"] = SCHEMA_VERSION
    return {name: json.dumps(s, indent=2, sort_keys=True) + "\n" for name, s in files.items()}


def main() -> int:
    JSON_DIR.mkdir(exist_ok=True)
    wanted = rendered_schemas()
    for stale in JSON_DIR.glob("*.json"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        (JSON_DIR / name).write_text(text)
    print(f"wrote {len(wanted)} schema files to {JSON_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
