"""The ``metatrail`` command line. ``main`` turns every expected error into one line."""

from __future__ import annotations

import logging
import sys

import typer

from metatrail.consumer.cli import db, ingest  # noqa: F401  (registers commands)
from metatrail.consumer.cli import query  # noqa: F401
from metatrail.consumer.cli import compare  # noqa: F401
from metatrail.consumer.cli import worker  # noqa: F401
from metatrail.consumer.cli import consume  # noqa: F401
from metatrail.consumer.cli import dlq  # noqa: F401
from metatrail.consumer.cli import status  # noqa: F401
from metatrail.consumer.cli import demo  # noqa: F401
from metatrail.consumer.cli import flush  # noqa: F401
from metatrail.consumer.cli import diff  # noqa: F401
from metatrail.consumer.cli import imports  # noqa: F401
from metatrail.consumer.cli import serve  # noqa: F401
from metatrail.consumer.cli import token  # noqa: F401
from metatrail.consumer.cli import openlineage  # noqa: F401
from metatrail.consumer.cli.app import app
from metatrail.schemas.errors import FilterError, MetatrailError

__all__ = ["app", "main"]


#: The options that spell the query parameters a ``FilterError`` may name.
OPTIONS = {"cursor": "--cursor", "max_hops": "--hops", "limit": "--limit"}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. Exit codes: 0 ok, 1 a metatrail error, 2 a usage error."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        result = app(args=argv, prog_name="metatrail", standalone_mode=False)
    except typer.TyperException as exc:  # usage errors: bad option, missing argument...
        print(f"metatrail: error: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    except typer.Abort:
        print("metatrail: aborted", file=sys.stderr)
        return 130
    except FilterError as exc:
        option = OPTIONS.get(exc.param or "")
        print(f"metatrail: error: {f'{option}: {exc.detail}' if option else exc}", file=sys.stderr)
        return 1
    except MetatrailError as exc:
        print(f"metatrail: error: {exc}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def entrypoint() -> None:
    sys.exit(main())
