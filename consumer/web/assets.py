"""Where the UI's files are, and whether the third-party ones were bundled."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
#: The files setup.py copies from node_modules (package.json's ``metatrail.vendor``).
VENDOR_FILES = ("cytoscape.min.js", "cytoscape-dagre.min.js", "htmx.min.js", "uPlot.iife.min.js", "uPlot.min.css")
MISSING_MESSAGE = ("metatrail web UI: its JavaScript libraries are not installed; in the source checkout run "
                   "`npm ci`, then `pip install -e .` again (the API under /api/v1 works meanwhile)")


def missing_vendor_files(static: Path = STATIC) -> list[str]:
    """The vendor files absent from ``static/vendor`` (empty when the UI can be served)."""
    return [name for name in VENDOR_FILES if not (static / "vendor" / name).is_file()]


__all__ = ["MISSING_MESSAGE", "STATIC", "TEMPLATES", "VENDOR_FILES", "missing_vendor_files"]
