"""prepaid accounts: deductions per reading, the meter's pricing state, why valves closed and who reopened them

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 16:10:00.000000
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_valve_reopen',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('client_request_id', sa.String(length=64), nullable=False),
    sa.Column('meter_id', sa.String(length=32), nullable=False),
    sa.Column('command_id', sa.String(length=64), nullable=False),
    sa.Column('checked_by', sa.String(length=64), nullable=False),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notes', sa.Text(), nullable=False),
    sa.Column('user_id', sa.String(length=32), nullable=False),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_valve_reopen')),
    sa.UniqueConstraint('client_request_id', name=op.f('uq_core_valve_reopen_client_request_id')),
    sa.UniqueConstraint('command_id', name=op.f('uq_core_valve_reopen_command_id'))
    )
    with op.batch_alter_table('core_valve_reopen', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_valve_reopen_meter_id'), ['meter_id'], unique=False)

    op.create_table('core_valve_closure',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('meter_id', sa.String(length=32), nullable=False),
    sa.Column('reason', sa.String(length=16), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('correlation_id', sa.String(length=64), nullable=False),
    sa.Column('message_id', sa.String(length=32), nullable=True),
    sa.Column('reopen_id', sa.String(length=32), nullable=True),
    sa.CheckConstraint("reason IN ('prepaid', 'safety', 'operator')", name=op.f('ck_core_valve_closure_reason')),
    sa.ForeignKeyConstraint(['reopen_id'], ['core_valve_reopen.id'], name=op.f('fk_core_valve_closure_reopen_id_core_valve_reopen')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_valve_closure'))
    )
    with op.batch_alter_table('core_valve_closure', schema=None) as batch_op:
        batch_op.create_index('ix_core_valve_closure_meter', ['meter_id', 'reopen_id'], unique=False)

    with op.batch_alter_table('core_meter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prepaid_read_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('prepaid_read_m3', sa.Numeric(precision=14, scale=3), nullable=True))
        batch_op.add_column(sa.Column('prepaid_cycle_start', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('prepaid_cycle_m3', sa.Numeric(precision=14, scale=3), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('prepaid_residue', sa.Numeric(precision=14, scale=9), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('prepaid_low_notified', sa.Boolean(), server_default=sa.false(), nullable=False))

    with op.batch_alter_table('core_prepaid_entry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reading_id', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('volume_m3', sa.Numeric(precision=14, scale=3), nullable=True))
        batch_op.add_column(sa.Column('detail', sa.String(length=200), nullable=True))
        batch_op.alter_column('payment_id', existing_type=sa.VARCHAR(length=32), nullable=True)
        batch_op.create_unique_constraint(batch_op.f('uq_core_prepaid_entry_reading_id'), ['reading_id'])
        batch_op.drop_constraint(batch_op.f('ck_core_prepaid_entry_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_core_prepaid_entry_kind'), "kind IN ('top_up', 'refund', 'deduction')")
        batch_op.create_check_constraint(batch_op.f('ck_core_prepaid_entry_payment'), "(kind = 'deduction') = (payment_id IS NULL)")
        batch_op.create_check_constraint(batch_op.f('ck_core_prepaid_entry_reading'), "(kind = 'deduction') = (reading_id IS NOT NULL)")


def downgrade() -> None:
    op.execute("DELETE FROM core_prepaid_entry WHERE kind = 'deduction'")
    with op.batch_alter_table('core_prepaid_entry', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_core_prepaid_entry_reading'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_core_prepaid_entry_payment'), type_='check')
        batch_op.drop_constraint(batch_op.f('ck_core_prepaid_entry_kind'), type_='check')
        batch_op.create_check_constraint(batch_op.f('ck_core_prepaid_entry_kind'), "kind IN ('top_up', 'refund')")
        batch_op.drop_constraint(batch_op.f('uq_core_prepaid_entry_reading_id'), type_='unique')
        batch_op.alter_column('payment_id', existing_type=sa.VARCHAR(length=32), nullable=False)
        batch_op.drop_column('detail')
        batch_op.drop_column('volume_m3')
        batch_op.drop_column('reading_id')

    with op.batch_alter_table('core_meter', schema=None) as batch_op:
        batch_op.drop_column('prepaid_low_notified')
        batch_op.drop_column('prepaid_residue')
        batch_op.drop_column('prepaid_cycle_m3')
        batch_op.drop_column('prepaid_cycle_start')
        batch_op.drop_column('prepaid_read_m3')
        batch_op.drop_column('prepaid_read_at')

    with op.batch_alter_table('core_valve_closure', schema=None) as batch_op:
        batch_op.drop_index('ix_core_valve_closure_meter')
    op.drop_table('core_valve_closure')
    with op.batch_alter_table('core_valve_reopen', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_valve_reopen_meter_id'))
    op.drop_table('core_valve_reopen')
