"""api tokens of the team server (only their SHA-256 is stored); metric owner indexes
that cover the value, for downsampled charts

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import metatrail.consumer.store.types
from metatrail.consumer.store.types import binary_collation

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    # the binary collation every metatrail table has on MySQL/MariaDB (see 0004)
    mysql = ({'mysql_charset': 'utf8mb4', 'mysql_collate': binary_collation(bind.dialect)}
             if bind.dialect.name in ('mysql', 'mariadb') else {})
    op.create_table('mt_tokens',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.Column('revoked_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mt_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_mt_tokens_token_hash')),
    **mysql,
    )
    for owner in ('execution_id', 'context_id'):
        op.create_index(f'ix_mt_metrics_{owner}_key_step_value_nonfinite', 'mt_metrics',
                        [owner, 'key', 'step', 'value', 'nonfinite'])
        op.drop_index(f'ix_mt_metrics_{owner}_key_step', table_name='mt_metrics')


def downgrade() -> None:
    for owner in ('execution_id', 'context_id'):
        op.create_index(f'ix_mt_metrics_{owner}_key_step', 'mt_metrics', [owner, 'key', 'step'])
        op.drop_index(f'ix_mt_metrics_{owner}_key_step_value_nonfinite', table_name='mt_metrics')
    op.drop_table('mt_tokens')
