"""indexes for the dashboard's live refreshes

Revision ID: 7c3e91d2a4b0
Revises: 05a0579f9a98
Create Date: 2026-11-25 09:00:00

"""
from alembic import op


revision = '7c3e91d2a4b0'
down_revision = '05a0579f9a98'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.create_index('ix_conversation_activity', ['last_message_at', 'id'], unique=False)
    with op.batch_alter_table('conversation_event', schema=None) as batch_op:
        batch_op.create_index('ix_conversation_event_kind', ['kind', 'id'], unique=False)
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_delivery_conversation_id'), ['conversation_id'], unique=False)


def downgrade():
    with op.batch_alter_table('webhook_delivery', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_delivery_conversation_id'))
    with op.batch_alter_table('conversation_event', schema=None) as batch_op:
        batch_op.drop_index('ix_conversation_event_kind')
    with op.batch_alter_table('conversation', schema=None) as batch_op:
        batch_op.drop_index('ix_conversation_activity')
