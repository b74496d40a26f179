"""core billing: meters, bills and bill lines (one bill per account and period)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 14:43:09.595932
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_bill',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('meter_id', sa.String(length=32), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('reading_start_m3', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('reading_end_m3', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('volume_m3', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('net_total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('tax_total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('cumulative_before', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('cumulative_after', sa.Numeric(precision=14, scale=3), nullable=True),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("category IN ('residential', 'industrial', 'commercial', 'heating')", name=op.f('ck_core_bill_category')),
    sa.CheckConstraint("status IN ('issued', 'cancelled')", name=op.f('ck_core_bill_status')),
    sa.CheckConstraint('period_end > period_start', name=op.f('ck_core_bill_period')),
    sa.ForeignKeyConstraint(['account_id'], ['core_account.id'], name=op.f('fk_core_bill_account_id_core_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_bill')),
    sa.UniqueConstraint('account_id', 'period_start', 'period_end', name='uq_core_bill_account_period')
    )
    op.create_table('core_meter',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=True),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('installed_at', sa.Date(), nullable=False),
    sa.Column('replace_by', sa.Date(), nullable=True),
    sa.Column('valve_state', sa.String(length=16), nullable=False),
    sa.Column('prepaid_balance', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.CheckConstraint("valve_state IN ('open', 'closed', 'abnormal', 'unknown')", name=op.f('ck_core_meter_valve_state')),
    sa.ForeignKeyConstraint(['account_id'], ['core_account.id'], name=op.f('fk_core_meter_account_id_core_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_meter'))
    )
    with op.batch_alter_table('core_meter', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_meter_account_id'), ['account_id'], unique=False)

    op.create_table('core_bill_line',
    sa.Column('bill_id', sa.String(length=32), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('tier', sa.Integer(), nullable=False),
    sa.Column('tariff_version', sa.String(length=64), nullable=False),
    sa.Column('cycle_start', sa.Date(), nullable=True),
    sa.Column('start', sa.Date(), nullable=False),
    sa.Column('end', sa.Date(), nullable=False),
    sa.Column('volume_m3', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('vat_rate', sa.Numeric(precision=5, scale=4), nullable=False),
    sa.ForeignKeyConstraint(['bill_id'], ['core_bill.id'], name=op.f('fk_core_bill_line_bill_id_core_bill')),
    sa.PrimaryKeyConstraint('bill_id', 'line_no', name='pk_core_bill_line')
    )


def downgrade() -> None:
    op.drop_table('core_bill_line')
    with op.batch_alter_table('core_meter', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_meter_account_id'))

    op.drop_table('core_meter')
    op.drop_table('core_bill')
