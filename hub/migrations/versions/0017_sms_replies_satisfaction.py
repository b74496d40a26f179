"""core: SMS replies, satisfaction records and announcements

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-27 22:00:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_sms_reply',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('phone_bidx', sa.String(length=64), nullable=False),
    sa.Column('content_enc', sa.Text(), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.Column('notification_id', sa.String(length=64), nullable=True),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_sms_reply'))
    )
    with op.batch_alter_table('core_sms_reply', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_sms_reply_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_core_sms_reply_phone_bidx'), ['phone_bidx'], unique=False)

    op.create_table('core_satisfaction',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.Column('work_order_id', sa.String(length=32), nullable=True),
    sa.Column('notification_id', sa.String(length=64), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('rating BETWEEN 1 AND 5', name=op.f('ck_core_satisfaction_rating')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_satisfaction'))
    )
    with op.batch_alter_table('core_satisfaction', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_satisfaction_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_core_satisfaction_work_order_id'), ['work_order_id'], unique=False)

    op.create_table('core_announcement',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('client_request_id', sa.String(length=64), nullable=False),
    sa.Column('district', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('params', sa.Text(), nullable=False),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_announcement')),
    sa.UniqueConstraint('client_request_id', name=op.f('uq_core_announcement_client_request_id'))
    )


def downgrade() -> None:
    op.drop_table('core_announcement')
    with op.batch_alter_table('core_satisfaction', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_satisfaction_work_order_id'))
        batch_op.drop_index(batch_op.f('ix_core_satisfaction_account_id'))
    op.drop_table('core_satisfaction')
    with op.batch_alter_table('core_sms_reply', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_sms_reply_phone_bidx'))
        batch_op.drop_index(batch_op.f('ix_core_sms_reply_account_id'))
    op.drop_table('core_sms_reply')
