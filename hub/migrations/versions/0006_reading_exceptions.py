"""core readings: the exceptions list of readings that broke validation rules

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 15:40:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_reading_exception',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('meter_id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.Column('read_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('volume_m3', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('consumption_m3', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('rules', sa.String(length=200), nullable=False),
    sa.Column('billable', sa.Boolean(), nullable=False),
    sa.Column('findings', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f('ck_core_reading_exception_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_reading_exception'))
    )
    with op.batch_alter_table('core_reading_exception', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_reading_exception_meter_id'), ['meter_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('core_reading_exception', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_reading_exception_meter_id'))
    op.drop_table('core_reading_exception')
