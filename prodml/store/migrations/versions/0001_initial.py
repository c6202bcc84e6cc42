"""initial store: runs, metrics, datasets, artifacts, registry

Revision ID: 0001
Revises: (none)
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('artifacts',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('uri', sa.String(length=2048), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('media_type', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('sha256', name=op.f('pk_artifacts'))
    )
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('source', sa.String(length=2048), nullable=False),
    sa.Column('source_type', sa.String(length=32), nullable=False),
    sa.Column('num_rows', sa.BigInteger(), nullable=False),
    sa.Column('num_columns', sa.Integer(), nullable=False),
    sa.Column('schema', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('digest', name=op.f('uq_datasets_digest'))
    )
    op.create_table('experiments',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_experiments')),
    sa.UniqueConstraint('name', name=op.f('uq_experiments_name'))
    )
    op.create_table('registered_models',
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_registered_models'))
    )
    op.create_table('model_aliases',
    sa.Column('model_name', sa.String(length=255), nullable=False),
    sa.Column('alias', sa.String(length=255), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('updated_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['model_name'], ['registered_models.name'], name=op.f('fk_model_aliases_model_name_registered_models')),
    sa.PrimaryKeyConstraint('model_name', 'alias', name=op.f('pk_model_aliases'))
    )
    op.create_table('runs',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('experiment_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('start_time', sa.BigInteger(), nullable=False),
    sa.Column('end_time', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('user', sa.String(length=255), nullable=True),
    sa.Column('host', sa.String(length=255), nullable=True),
    sa.Column('code_commit', sa.String(length=64), nullable=True),
    sa.Column('code_branch', sa.String(length=255), nullable=True),
    sa.Column('code_dirty', sa.Boolean(), nullable=True),
    sa.Column('code_diff_digest', sa.String(length=64), nullable=True),
    sa.Column('code_repo', sa.String(length=1024), nullable=True),
    sa.Column('environment', sa.JSON(), nullable=True),
    sa.Column('wall_time_s', sa.Float(), nullable=True),
    sa.Column('cpu_time_s', sa.Float(), nullable=True),
    sa.Column('peak_memory_bytes', sa.BigInteger(), nullable=True),
    sa.ForeignKeyConstraint(['experiment_id'], ['experiments.id'], name=op.f('fk_runs_experiment_id_experiments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_experiment_id'), ['experiment_id'], unique=False)
        batch_op.create_index('ix_runs_start_time', ['start_time'], unique=False)

    op.create_table('latest_metrics',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_latest_metrics_run_id_runs')),
    sa.PrimaryKeyConstraint('run_id', 'key', name=op.f('pk_latest_metrics'))
    )
    with op.batch_alter_table('latest_metrics', schema=None) as batch_op:
        batch_op.create_index('ix_latest_metrics_key_value', ['key', 'value'], unique=False)

    op.create_table('metrics',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('step', sa.BigInteger(), nullable=False),
    sa.Column('timestamp', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_metrics_run_id_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metrics'))
    )
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.create_index('ix_metrics_run_key_step', ['run_id', 'key', 'step'], unique=False)

    op.create_table('model_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('model_name', sa.String(length=255), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('flavor', sa.String(length=32), nullable=False),
    sa.Column('serialization', sa.String(length=32), nullable=False),
    sa.Column('flavor_options', sa.JSON(), nullable=True),
    sa.Column('model_class', sa.String(length=512), nullable=True),
    sa.Column('artifact_sha256', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.JSON(), nullable=True),
    sa.Column('run_id', sa.String(length=32), nullable=True),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['artifact_sha256'], ['artifacts.sha256'], name=op.f('fk_model_versions_artifact_sha256_artifacts')),
    sa.ForeignKeyConstraint(['model_name'], ['registered_models.name'], name=op.f('fk_model_versions_model_name_registered_models')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_model_versions_run_id_runs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model_versions')),
    sa.UniqueConstraint('model_name', 'version', name='uq_model_versions_name_version')
    )
    op.create_table('params',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_params_run_id_runs')),
    sa.PrimaryKeyConstraint('run_id', 'key', name=op.f('pk_params'))
    )
    op.create_table('run_artifacts',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_artifacts_run_id_runs')),
    sa.ForeignKeyConstraint(['sha256'], ['artifacts.sha256'], name=op.f('fk_run_artifacts_sha256_artifacts')),
    sa.PrimaryKeyConstraint('run_id', 'path', name=op.f('pk_run_artifacts'))
    )
    op.create_table('run_inputs',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('context', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_run_inputs_dataset_id_datasets')),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_run_inputs_run_id_runs')),
    sa.PrimaryKeyConstraint('run_id', 'dataset_id', 'context', name=op.f('pk_run_inputs'))
    )
    op.create_table('tags',
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], name=op.f('fk_tags_run_id_runs')),
    sa.PrimaryKeyConstraint('run_id', 'key', name=op.f('pk_tags'))
    )
    op.create_table('model_version_tags',
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['model_versions.id'], name=op.f('fk_model_version_tags_version_id_model_versions')),
    sa.PrimaryKeyConstraint('version_id', 'key', name=op.f('pk_model_version_tags'))
    )


def downgrade() -> None:
    op.drop_table('model_version_tags')
    op.drop_table('tags')
    op.drop_table('run_inputs')
    op.drop_table('run_artifacts')
    op.drop_table('params')
    op.drop_table('model_versions')
    with op.batch_alter_table('metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_metrics_run_key_step')

    op.drop_table('metrics')
    with op.batch_alter_table('latest_metrics', schema=None) as batch_op:
        batch_op.drop_index('ix_latest_metrics_key_value')

    op.drop_table('latest_metrics')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index('ix_runs_start_time')
        batch_op.drop_index(batch_op.f('ix_runs_experiment_id'))

    op.drop_table('runs')
    op.drop_table('model_aliases')
    op.drop_table('registered_models')
    op.drop_table('experiments')
    op.drop_table('datasets')
    op.drop_table('artifacts')
