"""pipelines: contexts (pipelines, pipeline runs), lineage artifacts, executions, events

Revision ID: 0007
Revises: 0006

"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table('pipeline_contexts',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('parent_id', sa.String(length=32), nullable=True),
    sa.Column('spec', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=True),
    sa.Column('triggered_by', sa.String(length=255), nullable=True),
    sa.Column('properties', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('ended_at', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pipeline_contexts'))
    )
    with op.batch_alter_table('pipeline_contexts', schema=None) as batch_op:
        batch_op.create_index('ix_pipeline_contexts_type_name', ['type', 'name'], unique=False)
        batch_op.create_index('ix_pipeline_contexts_parent_created',
                              ['parent_id', 'created_at'], unique=False)

    op.create_table('lineage_artifacts',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('type', sa.String(length=64), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('uri', sa.String(length=2048), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('blob_sha256', sa.String(length=64), nullable=True),
    sa.Column('properties', sa.JSON(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_lineage_artifacts')),
    sa.UniqueConstraint('type', 'digest', name='uq_lineage_artifacts_type_digest')
    )
    with op.batch_alter_table('lineage_artifacts', schema=None) as batch_op:
        batch_op.create_index('ix_lineage_artifacts_uri', ['uri'], unique=False)

    op.create_table('executions',
    sa.Column('id', _ID, autoincrement=True, nullable=False),
    sa.Column('context_id', sa.String(length=32), nullable=False),
    sa.Column('step', sa.String(length=255), nullable=False),
    sa.Column('function', sa.String(length=512), nullable=False),
    sa.Column('code_digest', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=True),
    sa.Column('cache_key', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('cached_from', sa.BigInteger(), nullable=True),
    sa.Column('run_id', sa.String(length=32), nullable=True),
    sa.Column('started_at', sa.BigInteger(), nullable=False),
    sa.Column('ended_at', sa.BigInteger(), nullable=True),
    sa.Column('logs', sa.Text(), nullable=True),
    sa.Column('resources', sa.JSON(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('approval', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_executions'))
    )
    with op.batch_alter_table('executions', schema=None) as batch_op:
        batch_op.create_index('ix_executions_context', ['context_id', 'id'], unique=False)
        batch_op.create_index('ix_executions_cache_key', ['cache_key', 'status'], unique=False)
        batch_op.create_index('ix_executions_run_id', ['run_id'], unique=False)

    op.create_table('events',
    sa.Column('execution_id', sa.BigInteger(), nullable=False),
    sa.Column('artifact_id', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('position', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('execution_id', 'kind', 'name', name=op.f('pk_events'))
    )
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index('ix_events_artifact', ['artifact_id', 'kind'], unique=False)


def downgrade() -> None:
    op.drop_table('events')
    op.drop_table('executions')
    op.drop_table('lineage_artifacts')
    op.drop_table('pipeline_contexts')
