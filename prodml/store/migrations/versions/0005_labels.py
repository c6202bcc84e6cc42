"""labels: annotations (append-only) and per-row dataset provenance

Revision ID: 0005
Revises: 0004

"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('annotations',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('item', sa.String(length=255), nullable=False),
    sa.Column('labeler', sa.String(length=255), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('instruction', sa.String(length=255), nullable=True),
    sa.Column('dataset_digest', sa.String(length=64), nullable=True),
    sa.Column('row_id', sa.BigInteger(), nullable=True),
    sa.Column('meta', sa.JSON(), nullable=True),
    sa.Column('source', sa.String(length=2048), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_annotations'))
    )
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.create_index('ix_annotations_item', ['item'], unique=False)
        batch_op.create_index('ix_annotations_labeler', ['labeler'], unique=False)
        batch_op.create_index('ix_annotations_dataset_digest', ['dataset_digest', 'row_id'], unique=False)

    op.create_table('dataset_provenance',
    sa.Column('dataset_digest', sa.String(length=64), nullable=False),
    sa.Column('columns', sa.JSON(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('artifact_sha256', sa.String(length=64), nullable=True),
    sa.Column('num_rows', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['artifact_sha256'], ['artifacts.sha256'], name=op.f('fk_dataset_provenance_artifact_sha256_artifacts')),
    sa.PrimaryKeyConstraint('dataset_digest', name=op.f('pk_dataset_provenance'))
    )


def downgrade() -> None:

    op.drop_table('dataset_provenance')
    with op.batch_alter_table('annotations', schema=None) as batch_op:
        batch_op.drop_index('ix_annotations_dataset_digest')
        batch_op.drop_index('ix_annotations_labeler')
        batch_op.drop_index('ix_annotations_item')

    op.drop_table('annotations')
