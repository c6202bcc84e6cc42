"""access: identities (hashed tokens with roles), who gave a label, endpoint policies, log prunes

Revision ID: 0008
Revises: 0007

"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('access_tokens',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.String(length=255), nullable=False),
    sa.Column('revoked_at', sa.BigInteger(), nullable=True),
    sa.Column('revoked_by', sa.String(length=255), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_access_tokens')),
    sa.UniqueConstraint('token_sha256', name='uq_access_tokens_token_sha256')
    )
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.create_index('ix_access_tokens_name', ['name'], unique=False)

    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.add_column(sa.Column('actor', sa.String(length=255), nullable=True))

    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('policy', sa.JSON(), nullable=True))

    op.create_table('log_prunes',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('endpoint', sa.String(length=255), nullable=False),
    sa.Column('time', sa.BigInteger(), nullable=False),
    sa.Column('before', sa.BigInteger(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('kept_labelled', sa.Integer(), nullable=False),
    sa.Column('archive_uri', sa.String(length=2048), nullable=True),
    sa.Column('actor', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_log_prunes'))
    )
    with op.batch_alter_table('log_prunes', schema=None) as batch_op:
        batch_op.create_index('ix_log_prunes_endpoint_time', ['endpoint', 'time'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('log_prunes', schema=None) as batch_op:
        batch_op.drop_index('ix_log_prunes_endpoint_time')
    op.drop_table('log_prunes')
    with op.batch_alter_table('endpoints', schema=None) as batch_op:
        batch_op.drop_column('policy')
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_column('actor')
    with op.batch_alter_table('access_tokens', schema=None) as batch_op:
        batch_op.drop_index('ix_access_tokens_name')
    op.drop_table('access_tokens')
