"""Schema migrations (Alembic), run programmatically: no alembic.ini to find."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from metatrail.consumer.store.engine import store_error

MIGRATIONS = Path(__file__).parent / "migrations"
#: Alembic keeps its environment in module globals: one migration at a time per process.
_LOCK = threading.Lock()


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


#: Alembic keeps the running migration in module globals: one upgrade at a time per process
#: (the embedded transport's relay thread and a worker may both start one).
_UPGRADE_LOCK = threading.Lock()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the store's schema to ``revision``. Idempotent; safe to run at every start.
    Raises ``StoreError`` (``TransientStoreError`` when the database is unwell, e.g.
    unreachable) like every other store call."""
    cfg = _config()
    try:
        with _UPGRADE_LOCK, engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except SQLAlchemyError as exc:
        raise store_error(exc) from exc


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new revision from the models (a developer tool)."""
    with _LOCK:
        cfg = _config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.revision(cfg, message=message, autogenerate=True)


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision (``None``: no schema yet). Raises ``StoreError``."""
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        raise store_error(exc) from exc


def head_revision() -> str | None:
    global _HEAD
    if _HEAD is None:
        _HEAD = ScriptDirectory.from_config(_config()).get_current_head()
    return _HEAD


_HEAD: str | None = None
