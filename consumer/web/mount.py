"""``mount_ui(app)``: the UI's pages, static files and sign-in on the server's app."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from metatrail.consumer.web import assets
from metatrail.consumer.web.auth import install_login
from metatrail.consumer.web.pages import add_page
from metatrail.consumer.web.views import charts, compare, diff, home, lineage, nodes, slices, tables

STATIC_URL = "/static"


def mount_ui(app: FastAPI, *, api_info: dict[str, Any] | None = None, static: Path | None = None) -> None:
    """Add the pages (each with its JSON twin), ``/static``, ``/login`` and the retire
    form to ``app``. Without the bundled browser libraries the pages answer one line
    saying what to run (503); the JSON twins and the API work regardless."""
    static = static if static is not None else assets.STATIC
    missing = assets.missing_vendor_files(static)
    app.state.ui_api_info = api_info or {}
    app.mount(STATIC_URL, StaticFiles(directory=static, check_dir=False), name="ui-static")
    install_login(app)
    for module in (home, tables, nodes, lineage, compare, diff, charts, slices):
        for path, template, build in module.PAGES:
            add_page(app, path, template, build, missing)
    nodes.install_retire(app)


__all__ = ["STATIC_URL", "mount_ui"]
