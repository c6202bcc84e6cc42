"""serving: endpoints, deployment history, prediction log, feedback, review queue; model version schema

Revision ID: 0004
Revises: 0003

"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('endpoints',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('fallback', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_endpoints'))
    )
    op.create_table('feedback',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('prediction_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('value', sa.Text(), nullable=True),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback'))
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index('ix_feedback_prediction_id', ['prediction_id'], unique=False)
        batch_op.create_index('ix_feedback_time', ['time'], unique=False)

    op.create_table('prediction_batches',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('time_first', sa.BigInteger(), nullable=False),
    sa.Column('time_last', sa.BigInteger(), nullable=False),
    sa.Column('num_rows', sa.Integer(), nullable=False),
    sa.Column('payload', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prediction_batches'))
    )
    with op.batch_alter_table('prediction_batches', schema=None) as batch_op:
        batch_op.create_index('ix_prediction_batches_endpoint_time', ['endpoint', 'time_last'], unique=False)

    op.create_table('predictions',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('model_name', sa.String(length=255), nullable=True),
    sa.Column('model_version', sa.Integer(), nullable=True),
    sa.Column('route', sa.String(length=16), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=True),
    sa.Column('routing_key', sa.String(length=255), nullable=True),
    sa.Column('prediction', sa.Text(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('batch_id', sa.Integer(), nullable=True),
    sa.Column('row', sa.Integer(), nullable=True),
    sa.Column('parent_id', sa.String(length=32), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_predictions'))
    )
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.create_index('ix_predictions_batch_id', ['batch_id'], unique=False)
        batch_op.create_index('ix_predictions_parent_id', ['parent_id'], unique=False)
        batch_op.create_index('ix_predictions_endpoint_time', ['endpoint', 'time'], unique=False)

    op.create_table('review_items',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('prediction_id', sa.String(length=32), nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('suggestion', sa.Text(), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('resolved_at', sa.BigInteger(), nullable=True),
    sa.Column('resolver', sa.String(length=255), nullable=True),
    sa.Column('label', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_items')),
    sa.UniqueConstraint('prediction_id', name=op.f('uq_review_items_prediction_id'))
    )
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.create_index('ix_review_items_endpoint_status', ['endpoint', 'status'], unique=False)

    op.create_table('deployment_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.Column('action', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('from_spec', sa.JSON(), nullable=True),
    sa.Column('to_spec', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['endpoint'], ['endpoints.name'], name=op.f('fk_deployment_events_endpoint_endpoints')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deployment_events'))
    )
    with op.batch_alter_table('deployment_events', schema=None) as batch_op:
        batch_op.create_index('ix_deployment_events_endpoint', ['endpoint', 'id'], unique=False)

    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('schema', sa.JSON(), nullable=True))




def downgrade() -> None:

    with op.batch_alter_table('model_versions', schema=None) as batch_op:
        batch_op.drop_column('schema')

    with op.batch_alter_table('deployment_events', schema=None) as batch_op:
        batch_op.drop_index('ix_deployment_events_endpoint')

    op.drop_table('deployment_events')
    with op.batch_alter_table('review_items', schema=None) as batch_op:
        batch_op.drop_index('ix_review_items_endpoint_status')

    op.drop_table('review_items')
    with op.batch_alter_table('predictions', schema=None) as batch_op:
        batch_op.drop_index('ix_predictions_endpoint_time')
        batch_op.drop_index('ix_predictions_parent_id')
        batch_op.drop_index('ix_predictions_batch_id')

    op.drop_table('predictions')
    with op.batch_alter_table('prediction_batches', schema=None) as batch_op:
        batch_op.drop_index('ix_prediction_batches_endpoint_time')

    op.drop_table('prediction_batches')
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index('ix_feedback_time')
        batch_op.drop_index('ix_feedback_prediction_id')

    op.drop_table('feedback')
    op.drop_table('endpoints')

