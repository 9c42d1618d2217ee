"""property documents: each node's properties as one JSON text, for reading

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 21:45:00.000000
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from metatrail.consumer.store.property_document import encode, plain_value

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

NODE_TABLES = {'mt_contexts': 'mt_context_properties', 'mt_artifacts': 'mt_artifact_properties',
               'mt_executions': 'mt_execution_properties'}
#: Nodes per page of the backfill.
BATCH = 1000


def upgrade() -> None:
    for table in NODE_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column(
                'properties_doc',
                sa.Text().with_variant(mysql.LONGTEXT(), 'mariadb').with_variant(mysql.LONGTEXT(), 'mysql'),
                nullable=True))
    for table, props in NODE_TABLES.items():
        _backfill(table, props)


def _backfill(table: str, props: str) -> None:
    """Documents of the nodes that already have properties (the same text apply writes),
    a page of node ids at a time so a large store never sits in memory at once."""
    bind = op.get_bind()
    page = sa.text(f"SELECT DISTINCT node_id FROM {props} WHERE node_id > :after ORDER BY node_id LIMIT {BATCH}")
    rows = sa.text(
        f"SELECT node_id, is_custom, name, value_type, int_value, double_value, string_value, bool_value, "
        f"json_value FROM {props} WHERE node_id >= :first AND node_id <= :last")
    update = sa.text(f"UPDATE {table} SET properties_doc = :doc WHERE id = :id")
    after = ""
    while True:
        ids = bind.execute(page, {"after": after}).scalars().all()
        if not ids:
            return
        values: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for node_id, is_custom, name, vtype, i, d, s, b, j in bind.execute(rows, {"first": ids[0], "last": ids[-1]}):
            decoded = None if j is None else json.loads(j)
            values.setdefault(node_id, ({}, {}))[1 if is_custom else 0][name] = plain_value(vtype, i, d, s, b, decoded)
        bind.execute(update, [{"id": node_id, "doc": encode(*halves)} for node_id, halves in sorted(values.items())])
        after = ids[-1]


def downgrade() -> None:
    for table in NODE_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column('properties_doc')
