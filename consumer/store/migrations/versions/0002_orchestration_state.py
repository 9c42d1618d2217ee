"""orchestration state: pending latest-policy inputs and worker claims on triggers

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 19:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import metatrail.consumer.store.types

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mt_step_pending',
    sa.Column('step_id', sa.String(length=36), nullable=False),
    sa.Column('trigger_id', sa.String(length=36), nullable=False),
    sa.Column('inputs', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.Column('updated_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('step_id', name=op.f('pk_mt_step_pending'))
    )
    op.create_table('mt_trigger_claims',
    sa.Column('trigger_id', sa.String(length=36), nullable=False),
    sa.Column('attempt', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('worker', sa.String(length=255), nullable=False),
    sa.Column('claimed_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.Column('finished_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('trigger_id', 'attempt', name=op.f('pk_mt_trigger_claims'))
    )


def downgrade() -> None:
    op.drop_table('mt_trigger_claims')
    op.drop_table('mt_step_pending')
