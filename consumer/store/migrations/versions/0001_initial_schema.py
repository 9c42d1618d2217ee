"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-22 19:11:24.072408
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import metatrail.consumer.store.types
from sqlalchemy.dialects import mysql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('mt_applied_events',
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.Column('applied_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('event_id', name=op.f('pk_mt_applied_events'))
    )
    with op.batch_alter_table('mt_applied_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_applied_events_applied_at'), ['applied_at'], unique=False)

    op.create_table('mt_artifact_properties',
    sa.Column('node_id', sa.String(length=36), nullable=False),
    sa.Column('is_custom', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('value_type', sa.String(length=8), nullable=False),
    sa.Column('int_value', sa.BigInteger(), nullable=True),
    sa.Column('double_value', sa.Double(), nullable=True),
    sa.Column('string_key', sa.String(length=191), nullable=True),
    sa.Column('string_value', sa.Text().with_variant(mysql.LONGTEXT(), 'mariadb').with_variant(mysql.LONGTEXT(), 'mysql'), nullable=True),
    sa.Column('bool_value', sa.Boolean(), nullable=True),
    sa.Column('json_value', metatrail.consumer.store.types.JSONText(), nullable=True),
    sa.Column('stamp_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.Column('stamp_event', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('node_id', 'is_custom', 'name', name=op.f('pk_mt_artifact_properties'))
    )
    with op.batch_alter_table('mt_artifact_properties', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_artifact_properties_name_is_custom_bool_value'), ['name', 'is_custom', 'bool_value'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_artifact_properties_name_is_custom_double_value'), ['name', 'is_custom', 'double_value'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_artifact_properties_name_is_custom_string_key'), ['name', 'is_custom', 'string_key'], unique=False)

    op.create_table('mt_artifacts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=128), nullable=True),
    sa.Column('uri', sa.String(length=2048), nullable=True),
    sa.Column('digest', sa.String(length=128), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('version', sa.String(length=128), nullable=True),
    sa.Column('state', sa.String(length=24), nullable=False),
    sa.Column('state_reason', sa.Text(), nullable=True),
    sa.Column('is_placeholder', sa.Boolean(), nullable=False),
    sa.Column('created_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('updated_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('field_stamps', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mt_artifacts'))
    )
    with op.batch_alter_table('mt_artifacts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_artifacts_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_artifacts_digest'), ['digest'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_artifacts_name_version'), ['name', 'version'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_artifacts_type_state_created_at'), ['type', 'state', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_artifacts_uri'), ['uri'], unique=False, mysql_length=255)

    op.create_table('mt_associations',
    sa.Column('context_id', sa.String(length=36), nullable=False),
    sa.Column('execution_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('context_id', 'execution_id', name=op.f('pk_mt_associations'))
    )
    with op.batch_alter_table('mt_associations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_associations_execution_id'), ['execution_id'], unique=False)

    op.create_table('mt_attributions',
    sa.Column('context_id', sa.String(length=36), nullable=False),
    sa.Column('artifact_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('context_id', 'artifact_id', name=op.f('pk_mt_attributions'))
    )
    with op.batch_alter_table('mt_attributions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_attributions_artifact_id'), ['artifact_id'], unique=False)

    op.create_table('mt_context_properties',
    sa.Column('node_id', sa.String(length=36), nullable=False),
    sa.Column('is_custom', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('value_type', sa.String(length=8), nullable=False),
    sa.Column('int_value', sa.BigInteger(), nullable=True),
    sa.Column('double_value', sa.Double(), nullable=True),
    sa.Column('string_key', sa.String(length=191), nullable=True),
    sa.Column('string_value', sa.Text().with_variant(mysql.LONGTEXT(), 'mariadb').with_variant(mysql.LONGTEXT(), 'mysql'), nullable=True),
    sa.Column('bool_value', sa.Boolean(), nullable=True),
    sa.Column('json_value', metatrail.consumer.store.types.JSONText(), nullable=True),
    sa.Column('stamp_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.Column('stamp_event', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('node_id', 'is_custom', 'name', name=op.f('pk_mt_context_properties'))
    )
    with op.batch_alter_table('mt_context_properties', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_context_properties_name_is_custom_bool_value'), ['name', 'is_custom', 'bool_value'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_context_properties_name_is_custom_double_value'), ['name', 'is_custom', 'double_value'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_context_properties_name_is_custom_string_key'), ['name', 'is_custom', 'string_key'], unique=False)

    op.create_table('mt_contexts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=128), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('is_placeholder', sa.Boolean(), nullable=False),
    sa.Column('created_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('updated_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('field_stamps', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mt_contexts'))
    )
    with op.batch_alter_table('mt_contexts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_contexts_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_contexts_type_created_at'), ['type', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_contexts_type_name'), ['type', 'name'], unique=False)

    op.create_table('mt_dead_letters',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('source_key', sa.String(length=255), nullable=False),
    sa.Column('reason', sa.Text().with_variant(mysql.LONGTEXT(), 'mariadb').with_variant(mysql.LONGTEXT(), 'mysql'), nullable=False),
    sa.Column('payload', sa.LargeBinary().with_variant(mysql.LONGBLOB(), 'mariadb').with_variant(mysql.LONGBLOB(), 'mysql'), nullable=False),
    sa.Column('payload_bytes', sa.BigInteger(), nullable=False),
    sa.Column('truncated', sa.Boolean(), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=True),
    sa.Column('kind', sa.String(length=64), nullable=True),
    sa.Column('topic', sa.String(length=255), nullable=True),
    sa.Column('partition', sa.Integer(), nullable=True),
    sa.Column('offset', sa.BigInteger(), nullable=True),
    sa.Column('created_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.Column('replayed_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('replay_result', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mt_dead_letters')),
    sa.UniqueConstraint('source_key', name=op.f('uq_mt_dead_letters_source_key'))
    )
    with op.batch_alter_table('mt_dead_letters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_dead_letters_created_at'), ['created_at'], unique=False)

    op.create_table('mt_edges',
    sa.Column('execution_id', sa.String(length=36), nullable=False),
    sa.Column('direction', sa.String(length=6), nullable=False),
    sa.Column('artifact_id', sa.String(length=36), nullable=False),
    sa.Column('role', sa.String(length=128), nullable=False),
    sa.Column('created_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('execution_id', 'direction', 'artifact_id', 'role', name=op.f('pk_mt_edges'))
    )
    with op.batch_alter_table('mt_edges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_edges_artifact_id_direction_execution_id'), ['artifact_id', 'direction', 'execution_id'], unique=False)

    op.create_table('mt_execution_properties',
    sa.Column('node_id', sa.String(length=36), nullable=False),
    sa.Column('is_custom', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('value_type', sa.String(length=8), nullable=False),
    sa.Column('int_value', sa.BigInteger(), nullable=True),
    sa.Column('double_value', sa.Double(), nullable=True),
    sa.Column('string_key', sa.String(length=191), nullable=True),
    sa.Column('string_value', sa.Text().with_variant(mysql.LONGTEXT(), 'mariadb').with_variant(mysql.LONGTEXT(), 'mysql'), nullable=True),
    sa.Column('bool_value', sa.Boolean(), nullable=True),
    sa.Column('json_value', metatrail.consumer.store.types.JSONText(), nullable=True),
    sa.Column('stamp_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.Column('stamp_event', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('node_id', 'is_custom', 'name', name=op.f('pk_mt_execution_properties'))
    )
    with op.batch_alter_table('mt_execution_properties', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_execution_properties_name_is_custom_bool_value'), ['name', 'is_custom', 'bool_value'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_execution_properties_name_is_custom_double_value'), ['name', 'is_custom', 'double_value'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_execution_properties_name_is_custom_string_key'), ['name', 'is_custom', 'string_key'], unique=False)

    op.create_table('mt_executions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('type', sa.String(length=128), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('state_rank', sa.SmallInteger(), nullable=False),
    sa.Column('started_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('ended_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('fingerprint', sa.String(length=128), nullable=True),
    sa.Column('trigger_id', sa.String(length=36), nullable=True),
    sa.Column('cached_from', sa.String(length=36), nullable=True),
    sa.Column('code_version', metatrail.consumer.store.types.JSONText(), nullable=True),
    sa.Column('environment', metatrail.consumer.store.types.JSONText(), nullable=True),
    sa.Column('error_type', sa.String(length=255), nullable=True),
    sa.Column('error_message', sa.Text().with_variant(mysql.LONGTEXT(), 'mariadb').with_variant(mysql.LONGTEXT(), 'mysql'), nullable=True),
    sa.Column('error_traceback', sa.Text().with_variant(mysql.LONGTEXT(), 'mariadb').with_variant(mysql.LONGTEXT(), 'mysql'), nullable=True),
    sa.Column('is_placeholder', sa.Boolean(), nullable=False),
    sa.Column('created_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('updated_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('field_stamps', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mt_executions'))
    )
    with op.batch_alter_table('mt_executions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_executions_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_executions_fingerprint_state'), ['fingerprint', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_executions_trigger_id'), ['trigger_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_executions_type_state_created_at'), ['type', 'state', 'created_at'], unique=False)

    op.create_table('mt_metrics',
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('execution_id', sa.String(length=36), nullable=True),
    sa.Column('context_id', sa.String(length=36), nullable=True),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('step', sa.BigInteger(), nullable=True),
    sa.Column('value', sa.Double(), nullable=True),
    sa.Column('nonfinite', sa.String(length=4), nullable=True),
    sa.Column('timestamp', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('event_id', 'seq', name=op.f('pk_mt_metrics'))
    )
    with op.batch_alter_table('mt_metrics', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_metrics_context_id_key_step'), ['context_id', 'key', 'step'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_metrics_execution_id_key_step'), ['execution_id', 'key', 'step'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_metrics_key_timestamp'), ['key', 'timestamp'], unique=False)

    op.create_table('mt_parent_contexts',
    sa.Column('context_id', sa.String(length=36), nullable=False),
    sa.Column('parent_id', sa.String(length=36), nullable=False),
    sa.PrimaryKeyConstraint('context_id', 'parent_id', name=op.f('pk_mt_parent_contexts'))
    )
    with op.batch_alter_table('mt_parent_contexts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_parent_contexts_parent_id'), ['parent_id'], unique=False)

    op.create_table('mt_steps',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('pipeline', sa.String(length=255), nullable=True),
    sa.Column('module', sa.String(length=255), nullable=False),
    sa.Column('qualname', sa.String(length=255), nullable=False),
    sa.Column('inputs', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.Column('outputs', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.Column('policy', sa.String(length=16), nullable=False),
    sa.Column('code_version', metatrail.consumer.store.types.JSONText(), nullable=True),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('registered_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.Column('field_stamps', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mt_steps'))
    )
    op.create_table('mt_trigger_outbox',
    sa.Column('trigger_id', sa.String(length=36), nullable=False),
    sa.Column('step_id', sa.String(length=36), nullable=False),
    sa.Column('step_name', sa.String(length=255), nullable=False),
    sa.Column('inputs', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.Column('created_at', metatrail.consumer.store.types.UTCDateTime(), nullable=False),
    sa.Column('sent_at', metatrail.consumer.store.types.UTCDateTime(), nullable=True),
    sa.PrimaryKeyConstraint('trigger_id', name=op.f('pk_mt_trigger_outbox'))
    )
    with op.batch_alter_table('mt_trigger_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_mt_trigger_outbox_sent_at_created_at'), ['sent_at', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_mt_trigger_outbox_step_id_created_at'), ['step_id', 'created_at'], unique=False)

    op.create_table('mt_types',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('properties', metatrail.consumer.store.types.JSONText(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('kind', 'name', name=op.f('pk_mt_types'))
    )



def downgrade() -> None:

    op.drop_table('mt_types')
    with op.batch_alter_table('mt_trigger_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_trigger_outbox_step_id_created_at'))
        batch_op.drop_index(batch_op.f('ix_mt_trigger_outbox_sent_at_created_at'))

    op.drop_table('mt_trigger_outbox')
    op.drop_table('mt_steps')
    with op.batch_alter_table('mt_parent_contexts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_parent_contexts_parent_id'))

    op.drop_table('mt_parent_contexts')
    with op.batch_alter_table('mt_metrics', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_metrics_key_timestamp'))
        batch_op.drop_index(batch_op.f('ix_mt_metrics_execution_id_key_step'))
        batch_op.drop_index(batch_op.f('ix_mt_metrics_context_id_key_step'))

    op.drop_table('mt_metrics')
    with op.batch_alter_table('mt_executions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_executions_type_state_created_at'))
        batch_op.drop_index(batch_op.f('ix_mt_executions_trigger_id'))
        batch_op.drop_index(batch_op.f('ix_mt_executions_fingerprint_state'))
        batch_op.drop_index(batch_op.f('ix_mt_executions_created_at'))

    op.drop_table('mt_executions')
    with op.batch_alter_table('mt_execution_properties', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_execution_properties_name_is_custom_string_key'))
        batch_op.drop_index(batch_op.f('ix_mt_execution_properties_name_is_custom_double_value'))
        batch_op.drop_index(batch_op.f('ix_mt_execution_properties_name_is_custom_bool_value'))

    op.drop_table('mt_execution_properties')
    with op.batch_alter_table('mt_edges', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_edges_artifact_id_direction_execution_id'))

    op.drop_table('mt_edges')
    with op.batch_alter_table('mt_dead_letters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_dead_letters_created_at'))

    op.drop_table('mt_dead_letters')
    with op.batch_alter_table('mt_contexts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_contexts_type_name'))
        batch_op.drop_index(batch_op.f('ix_mt_contexts_type_created_at'))
        batch_op.drop_index(batch_op.f('ix_mt_contexts_name'))

    op.drop_table('mt_contexts')
    with op.batch_alter_table('mt_context_properties', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_context_properties_name_is_custom_string_key'))
        batch_op.drop_index(batch_op.f('ix_mt_context_properties_name_is_custom_double_value'))
        batch_op.drop_index(batch_op.f('ix_mt_context_properties_name_is_custom_bool_value'))

    op.drop_table('mt_context_properties')
    with op.batch_alter_table('mt_attributions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_attributions_artifact_id'))

    op.drop_table('mt_attributions')
    with op.batch_alter_table('mt_associations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_associations_execution_id'))

    op.drop_table('mt_associations')
    with op.batch_alter_table('mt_artifacts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_artifacts_uri'), mysql_length=255)
        batch_op.drop_index(batch_op.f('ix_mt_artifacts_type_state_created_at'))
        batch_op.drop_index(batch_op.f('ix_mt_artifacts_name_version'))
        batch_op.drop_index(batch_op.f('ix_mt_artifacts_digest'))
        batch_op.drop_index(batch_op.f('ix_mt_artifacts_created_at'))

    op.drop_table('mt_artifacts')
    with op.batch_alter_table('mt_artifact_properties', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_artifact_properties_name_is_custom_string_key'))
        batch_op.drop_index(batch_op.f('ix_mt_artifact_properties_name_is_custom_double_value'))
        batch_op.drop_index(batch_op.f('ix_mt_artifact_properties_name_is_custom_bool_value'))

    op.drop_table('mt_artifact_properties')
    with op.batch_alter_table('mt_applied_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_mt_applied_events_applied_at'))

    op.drop_table('mt_applied_events')

