"""How commands print: JSON for machines (``--json``), rich for people."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any
from uuid import UUID

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return asdict(value)
    raise TypeError(f"cannot print {type(value).__name__} as JSON")


def print_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout (datetimes ISO 8601, UUIDs as strings)."""
    sys.stdout.write(json.dumps(data, default=_default, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()
