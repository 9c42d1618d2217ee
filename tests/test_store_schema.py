"""The migrations create exactly what the models describe, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from metatrail.consumer.store.migrate import current_revision, head_revision, upgrade
from metatrail.consumer.store.models import Base


def test_migrations_and_models_agree(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"


def test_upgrade_is_idempotent(engine: Engine) -> None:
    upgrade(engine)
    upgrade(engine)
    assert current_revision(engine) == head_revision()


def test_number_and_bool_indexes_hold_only_rows_with_such_a_value(engine: Engine) -> None:
    """Partial where the backend has partial indexes; the string index, which existence
    filters search, stays whole."""
    dialect = engine.dialect.name
    if dialect == "postgresql":
        sql = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'mt_execution_properties'"
    elif dialect == "sqlite":
        sql = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'mt_execution_properties'"
    else:
        sql = ("SELECT DISTINCT index_name, '' FROM information_schema.statistics "
               "WHERE table_schema = DATABASE() AND table_name = 'mt_execution_properties'")
    with engine.connect() as conn:
        definitions = {name: definition or "" for name, definition in conn.exec_driver_sql(sql).all()}
    prefix = "ix_mt_execution_properties_name_is_custom_"
    partial = {column for column in ("double_value", "string_key", "bool_value")
               if "WHERE" in definitions[prefix + column].upper()}
    assert partial == (set() if dialect in ("mysql", "mariadb") else {"double_value", "bool_value"})


def test_postgresql_compresses_large_texts_with_lz4(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        methods = dict(conn.exec_driver_sql(
            "SELECT attrelid::regclass::text || '.' || attname, attcompression FROM pg_attribute "
            "WHERE attname IN ('properties_doc', 'json_value', 'string_value', 'payload') "
            "AND attrelid::regclass::text LIKE 'mt_%%'").all())
    assert methods and set(methods.values()) == {"l"}, methods
