"""the durable copy of Zoho Desk's THRESHOLD_EXCEEDED block

Revision ID: 3f1d2b8e6c47
Revises: 7c3e91d2a4b0
Create Date: 2026-12-02 01:50:00

"""
from alembic import op
import sqlalchemy as sa


revision = '3f1d2b8e6c47'
down_revision = '7c3e91d2a4b0'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'desk_block',
        sa.Column('key', sa.String(length=120), nullable=False),
        sa.Column('until', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_desk_block')),
    )


def downgrade():
    op.drop_table('desk_block')
