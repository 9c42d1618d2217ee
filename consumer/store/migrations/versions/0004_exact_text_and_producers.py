"""exact text on MySQL/MariaDB (binary NO PAD collation); executions keep their producer
process and last event time

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import metatrail.consumer.store.types
from metatrail.consumer.store.types import binary_collation

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

#: Every table of the store (the models' tables at this revision).
TABLES = (
    'mt_types', 'mt_contexts', 'mt_parent_contexts', 'mt_artifacts', 'mt_executions', 'mt_edges',
    'mt_attributions', 'mt_associations', 'mt_artifact_properties', 'mt_execution_properties',
    'mt_context_properties', 'mt_metrics', 'mt_applied_events', 'mt_dead_letters', 'mt_steps',
    'mt_trigger_outbox', 'mt_step_pending', 'mt_trigger_claims',
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name in ('mysql', 'mariadb'):
        # Names differing only by case, accent or trailing space were one key under the
        # server's default collation (utf8mb4_general_ci): their batches never applied.
        # Converting can only split keys that were equal, never merge distinct ones.
        collation = binary_collation(bind.dialect)
        for table in TABLES:
            op.execute(f'ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}')
    with op.batch_alter_table('mt_executions') as batch:
        batch.add_column(sa.Column('producer_host', sa.String(length=255), nullable=True))
        batch.add_column(sa.Column('producer_pid', sa.Integer(), nullable=True))
        batch.add_column(sa.Column('last_event_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True))
        batch.create_index(batch.f('ix_mt_executions_state_last_event_at'), ['state', 'last_event_at'], unique=False)
    op.execute('UPDATE mt_executions SET last_event_at = updated_at')


def downgrade() -> None:
    with op.batch_alter_table('mt_executions') as batch:
        batch.drop_index(batch.f('ix_mt_executions_state_last_event_at'))
        batch.drop_column('last_event_at')
        batch.drop_column('producer_pid')
        batch.drop_column('producer_host')
    # The collation stays binary: going back to a case-insensitive one could merge keys.
