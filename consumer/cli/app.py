"""The ``metatrail`` Typer application that every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="metatrail",
    help="Record ML metadata automatically; query and drive the lineage graph.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
db_app = typer.Typer(help="Manage the metadata store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
import_app = typer.Typer(help="Import metadata recorded by other systems.", no_args_is_help=True)
app.add_typer(import_app, name="import")
