"""monitoring: monitors (cursor, state), monitor_results (series per window), alerts

Revision ID: 0006
Revises: 0005

"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('monitors',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('cursor_id', sa.String(length=32), nullable=True),
    sa.Column('cursor_time', sa.BigInteger(), nullable=True),
    sa.Column('windows', sa.Integer(), nullable=False),
    sa.Column('pending', sa.LargeBinary(), nullable=True),
    sa.Column('state', sa.JSON(), nullable=True),
    sa.Column('detectors', sa.LargeBinary(), nullable=True),
    sa.Column('latest', sa.JSON(), nullable=True),
    sa.Column('latest_window_end', sa.BigInteger(), nullable=True),
    sa.Column('last_run_at', sa.BigInteger(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_monitors'))
    )
    with op.batch_alter_table('monitors', schema=None) as batch_op:
        batch_op.create_index('ix_monitors_endpoint', ['endpoint'], unique=False)

    op.create_table('monitor_results',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('monitor', sa.String(length=255), nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('window_index', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.BigInteger(), nullable=False),
    sa.Column('window_end', sa.BigInteger(), nullable=False),
    sa.Column('num_rows', sa.Integer(), nullable=False),
    sa.Column('series', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('computed_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_monitor_results')),
    sa.UniqueConstraint('monitor', 'window_index', 'series', name='uq_monitor_results_monitor_window_series')
    )
    with op.batch_alter_table('monitor_results', schema=None) as batch_op:
        batch_op.create_index('ix_monitor_results_monitor_series_end', ['monitor', 'series', 'window_end'], unique=False)
        batch_op.create_index('ix_monitor_results_endpoint_end', ['endpoint', 'window_end'], unique=False)

    op.create_table('alerts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('key', sa.String(length=600), nullable=False),
    sa.Column('monitor', sa.String(length=255), nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('rule', sa.String(length=512), nullable=False),
    sa.Column('series', sa.String(length=255), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('started_at', sa.BigInteger(), nullable=False),
    sa.Column('fired_at', sa.BigInteger(), nullable=False),
    sa.Column('resolved_at', sa.BigInteger(), nullable=True),
    sa.Column('window_index', sa.Integer(), nullable=True),
    sa.Column('window_start', sa.BigInteger(), nullable=True),
    sa.Column('window_end', sa.BigInteger(), nullable=True),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('peak', sa.Float(), nullable=True),
    sa.Column('lower', sa.Float(), nullable=True),
    sa.Column('upper', sa.Float(), nullable=True),
    sa.Column('breaches', sa.Integer(), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('finding', sa.JSON(), nullable=True),
    sa.Column('actions', sa.JSON(), nullable=True),
    sa.Column('acked_at', sa.BigInteger(), nullable=True),
    sa.Column('acked_by', sa.String(length=255), nullable=True),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('monitor', 'key', name='uq_alerts_monitor_key')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_status_fired_at', ['status', 'fired_at'], unique=False)
        batch_op.create_index('ix_alerts_endpoint_fired_at', ['endpoint', 'fired_at'], unique=False)
        batch_op.create_index('ix_alerts_monitor_fired_at', ['monitor', 'fired_at'], unique=False)


def downgrade() -> None:

    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index('ix_alerts_monitor_fired_at')
        batch_op.drop_index('ix_alerts_endpoint_fired_at')
        batch_op.drop_index('ix_alerts_status_fired_at')

    op.drop_table('alerts')
    with op.batch_alter_table('monitor_results', schema=None) as batch_op:
        batch_op.drop_index('ix_monitor_results_endpoint_end')
        batch_op.drop_index('ix_monitor_results_monitor_series_end')

    op.drop_table('monitor_results')
    with op.batch_alter_table('monitors', schema=None) as batch_op:
        batch_op.drop_index('ix_monitors_endpoint')

    op.drop_table('monitors')
