"""``metatrail token create | ls | revoke``: API tokens of the team server."""

from __future__ import annotations

import sys

import typer
from rich.table import Table

from metatrail.consumer.cli.app import app
from metatrail.consumer.cli.output import console, print_json
from metatrail.consumer.store.engine import open_engine
from metatrail.consumer.store.migrate import upgrade
from metatrail.schemas.settings import load_settings

token_app = typer.Typer(help="Create, list and revoke API tokens of `metatrail serve`.", no_args_is_help=True)
app.add_typer(token_app, name="token")
URL_OPTION = typer.Option(None, "--url", help="Store URL (default: METATRAIL_STORE_URL).")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON.")


def _engine(url: str | None):  # type: ignore[no-untyped-def]
    engine = open_engine(url or load_settings().store_url)
    upgrade(engine)
    return engine


@token_app.command("create")
def create(
    scope: str = typer.Option(..., "--scope", help="read (GET), write (+ POST /events, retire) or admin (+ replay, tokens)."),
    name: str | None = typer.Option(None, "--name", help="What the token is for (shown by `token ls`)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Create a token and print it once: only its hash is stored."""
    from metatrail.consumer.server.tokens import create_token

    engine = _engine(url)
    try:
        token, info = create_token(engine, scope, name)
    finally:
        engine.dispose()
    if as_json:
        print_json({"id": info.id, "name": info.name, "scope": info.scope, "created_at": info.created_at,
                    "token": token})
        return
    print(token)
    print(f"token {info.id} ({info.scope}) created; it is shown only now: keep it in a secret store",
          file=sys.stderr)


@token_app.command("ls")
def ls(
    include_revoked: bool = typer.Option(False, "--all", help="Include revoked tokens."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """List tokens (ids, names, scopes; never the tokens)."""
    from metatrail.consumer.server.tokens import list_tokens

    engine = _engine(url)
    try:
        tokens = list_tokens(engine, include_revoked=include_revoked)
    finally:
        engine.dispose()
    if as_json:
        print_json([{"id": t.id, "name": t.name, "scope": t.scope, "created_at": t.created_at,
                     "revoked_at": t.revoked_at} for t in tokens])
        return
    table = Table("scope", "name", "created", "revoked")
    table.add_column("id", overflow="fold", no_wrap=True)
    for t in tokens:
        table.add_row(t.scope, t.name or "", t.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                      t.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if t.revoked_at else "", t.id)
    console.print(table)


@token_app.command("revoke")
def revoke(
    token_id: str = typer.Argument(..., help="Token id (or a prefix of at least 4 characters)."),
    url: str | None = URL_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Revoke a token: the server refuses it from the next request on. Idempotent."""
    from metatrail.consumer.server.tokens import revoke_token

    engine = _engine(url)
    try:
        info = revoke_token(engine, token_id)
    finally:
        engine.dispose()
    if as_json:
        print_json({"id": info.id, "scope": info.scope, "revoked_at": info.revoked_at})
    else:
        console.print(f"token {info.id} revoked")
