"""MLMD origin: nodes keep their MLMD id and external id, types their base type, edges
MLMD's event type (in the key, so an OUTPUT and a DECLARED_OUTPUT edge stay two edges)

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-29 14:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0004'
branch_labels = None
depends_on = None

NODE_TABLES = ('mt_contexts', 'mt_artifacts', 'mt_executions')
EDGE_KEY = ['execution_id', 'direction', 'artifact_id', 'role']


def upgrade() -> None:
    for table in NODE_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column('mlmd_id', sa.BigInteger(), nullable=True))
            batch.add_column(sa.Column('external_id', sa.String(length=255), nullable=True))
            batch.create_index(batch.f(f'ix_{table}_mlmd_id'), ['mlmd_id'], unique=False)
            batch.create_index(batch.f(f'ix_{table}_external_id'), ['external_id'], unique=False)
    with op.batch_alter_table('mt_types') as batch:
        batch.add_column(sa.Column('base_type', sa.String(length=128), nullable=True))
    with op.batch_alter_table('mt_edges') as batch:
        batch.add_column(sa.Column('edge_type', sa.String(length=16), nullable=True))
    op.execute("UPDATE mt_edges SET edge_type = direction")
    with op.batch_alter_table('mt_edges', recreate='auto') as batch:
        batch.alter_column('edge_type', existing_type=sa.String(length=16), nullable=False)
        batch.drop_constraint('pk_mt_edges', type_='primary')
        batch.create_primary_key('pk_mt_edges', [*EDGE_KEY, 'edge_type'])


def downgrade() -> None:
    with op.batch_alter_table('mt_edges', recreate='auto') as batch:
        batch.drop_constraint('pk_mt_edges', type_='primary')
        batch.create_primary_key('pk_mt_edges', EDGE_KEY)
        batch.drop_column('edge_type')
    with op.batch_alter_table('mt_types') as batch:
        batch.drop_column('base_type')
    for table in NODE_TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(batch.f(f'ix_{table}_external_id'))
            batch.drop_index(batch.f(f'ix_{table}_mlmd_id'))
            batch.drop_column('external_id')
            batch.drop_column('mlmd_id')
