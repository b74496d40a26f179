"""work orders with SLA clocks and their history; who acknowledged and closed an alarm, and its flow

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-27 19:10:00.000000

Existing alarms keep ``correlation_id`` empty (their flow was not stored); new ones carry it.
"""
from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

ALARM_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ('correlation_id', sa.String(length=64)),
    ('acknowledged_by', sa.String(length=64)),
    ('acknowledged_at', sa.DateTime(timezone=True)),
    ('closed_by', sa.String(length=64)),
    ('closed_at', sa.DateTime(timezone=True)),
    ('note', sa.Text()),
]


def upgrade() -> None:
    op.create_table('core_work_order',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('flags', sa.String(length=100), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.Column('meter_id', sa.String(length=32), nullable=True),
    sa.Column('alarm_id', sa.String(length=64), nullable=True),
    sa.Column('summary', sa.Text(), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('clock_until', sa.String(length=16), nullable=False),
    sa.Column('clock_stopped_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_work_order')),
    sa.UniqueConstraint('source', name=op.f('uq_core_work_order_source'))
    )
    with op.batch_alter_table('core_work_order', schema=None) as batch_op:
        batch_op.create_index('ix_core_work_order_clock', ['clock_stopped_at', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_core_work_order_meter_id'), ['meter_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_core_work_order_alarm_id'), ['alarm_id'], unique=False)

    op.create_table('core_work_order_event',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.String(length=32), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('by', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('from_status', sa.String(length=16), nullable=True),
    sa.Column('to_status', sa.String(length=16), nullable=True),
    sa.Column('flag', sa.String(length=32), nullable=True),
    sa.Column('note', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['core_work_order.id'],
                            name=op.f('fk_core_work_order_event_order_id_core_work_order')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_work_order_event'))
    )
    with op.batch_alter_table('core_work_order_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_work_order_event_order_id'), ['order_id'], unique=False)

    with op.batch_alter_table('core_alarm', schema=None) as batch_op:
        for name, type_ in ALARM_COLUMNS:
            batch_op.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('core_alarm', schema=None) as batch_op:
        for name, _ in reversed(ALARM_COLUMNS):
            batch_op.drop_column(name)
    with op.batch_alter_table('core_work_order_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_work_order_event_order_id'))
    op.drop_table('core_work_order_event')
    with op.batch_alter_table('core_work_order', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_work_order_alarm_id'))
        batch_op.drop_index(batch_op.f('ix_core_work_order_meter_id'))
        batch_op.drop_index('ix_core_work_order_clock')
    op.drop_table('core_work_order')
