"""property value indexes: the number and bool indexes cover only rows holding such a
value (partial, on PostgreSQL and SQLite); PostgreSQL compresses large texts with lz4

Why: every JSON or string property row (most OpenLineage facets) took an entry in both
indexes, and pglz compressed every facet and property document written. lz4 applies to
values written from now on; PostgreSQL reads both kinds.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 05:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

PROPERTY_TABLES = ('mt_artifact_properties', 'mt_execution_properties', 'mt_context_properties')
PARTIAL_COLUMNS = ('double_value', 'bool_value')
#: The texts that can be large: property documents, JSON and string values, dead letters.
LARGE_COLUMNS = (
    *((table, 'properties_doc') for table in ('mt_artifacts', 'mt_executions', 'mt_contexts')),
    *((table, column) for table in PROPERTY_TABLES for column in ('json_value', 'string_value')),
    ('mt_dead_letters', 'payload'),
)


def upgrade() -> None:
    _rebuild_value_indexes(partial=True)
    _compress_with('lz4')


def downgrade() -> None:
    _compress_with('pglz')
    _rebuild_value_indexes(partial=False)


def _rebuild_value_indexes(*, partial: bool) -> None:
    dialect = op.get_bind().dialect.name
    if dialect not in ('postgresql', 'sqlite'):  # MySQL and MariaDB have no partial indexes
        return
    for table in PROPERTY_TABLES:
        for column in PARTIAL_COLUMNS:
            name = f'ix_{table}_name_is_custom_{column}'
            where = {f'{dialect}_where': sa.text(f'{column} IS NOT NULL')} if partial else {}
            op.drop_index(name, table_name=table)
            op.create_index(name, table, ['name', 'is_custom', column], unique=False, **where)


def _compress_with(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql' or not _has_lz4(bind):
        return
    for table, column in LARGE_COLUMNS:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}')


def _has_lz4(bind: sa.Connection) -> bool:
    """PostgreSQL 14 or later, built with lz4 (Debian's, the official images' are)."""
    values = bind.exec_driver_sql(
        "SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'").scalar()
    return values is not None and 'lz4' in values
