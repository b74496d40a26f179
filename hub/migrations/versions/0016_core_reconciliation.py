"""core reconciliation: channel statement runs and their discrepancies

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-27 21:31:00.921993
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_recon_run',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('format', sa.String(length=16), nullable=False),
    sa.Column('statement_date', sa.Date(), nullable=False),
    sa.Column('file_sha256', sa.String(length=64), nullable=False),
    sa.Column('file_name', sa.String(length=200), nullable=False),
    sa.Column('imported_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('imported_by', sa.String(length=64), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.Column('payments', sa.Integer(), nullable=False),
    sa.Column('refunds', sa.Integer(), nullable=False),
    sa.Column('matched', sa.Integer(), nullable=False),
    sa.Column('discrepancies', sa.Integer(), nullable=False),
    sa.Column('statement_total', sa.Numeric(precision=16, scale=2), nullable=False),
    sa.Column('refund_total', sa.Numeric(precision=16, scale=2), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_recon_run')),
    sa.UniqueConstraint('channel', 'file_sha256', name='uq_core_recon_run_channel_file')
    )
    with op.batch_alter_table('core_recon_run', schema=None) as batch_op:
        batch_op.create_index('ix_core_recon_run_channel_date', ['channel', 'statement_date'], unique=False)

    op.create_table('core_recon_discrepancy',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('run_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('transaction_id', sa.String(length=64), nullable=False),
    sa.Column('refund_id', sa.String(length=64), nullable=False),
    sa.Column('out_trade_no', sa.String(length=64), nullable=False),
    sa.Column('payment_id', sa.String(length=32), nullable=True),
    sa.Column('line_no', sa.Integer(), nullable=True),
    sa.Column('statement_amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('core_amount', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('statement_status', sa.String(length=16), nullable=True),
    sa.Column('core_status', sa.String(length=16), nullable=True),
    sa.Column('detail', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolved_by', sa.String(length=64), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolution_note', sa.String(length=500), nullable=True),
    sa.CheckConstraint("(status = 'resolved') = (resolved_at IS NOT NULL)", name=op.f('ck_core_recon_discrepancy_resolved')),
    sa.CheckConstraint("kind IN ('missing_in_core', 'missing_in_statement', 'duplicated', 'amount_mismatch', 'status_mismatch')", name=op.f('ck_core_recon_discrepancy_kind')),
    sa.CheckConstraint("status IN ('open', 'resolved')", name=op.f('ck_core_recon_discrepancy_status')),
    sa.ForeignKeyConstraint(['run_id'], ['core_recon_run.id'], name=op.f('fk_core_recon_discrepancy_run_id_core_recon_run')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_recon_discrepancy'))
    )
    with op.batch_alter_table('core_recon_discrepancy', schema=None) as batch_op:
        batch_op.create_index('ix_core_recon_discrepancy_open', ['status', 'run_id'], unique=False)
        batch_op.create_index('ix_core_recon_discrepancy_run', ['run_id', 'kind', 'id'], unique=False)

    with op.batch_alter_table('core_payment', schema=None) as batch_op:
        batch_op.create_index('ix_core_payment_channel_paid_at', ['channel', 'paid_at'], unique=False)

    with op.batch_alter_table('core_payment_refund', schema=None) as batch_op:
        batch_op.create_index('ix_core_payment_refund_refunded_at', ['refunded_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('core_payment_refund', schema=None) as batch_op:
        batch_op.drop_index('ix_core_payment_refund_refunded_at')

    with op.batch_alter_table('core_payment', schema=None) as batch_op:
        batch_op.drop_index('ix_core_payment_channel_paid_at')

    with op.batch_alter_table('core_recon_discrepancy', schema=None) as batch_op:
        batch_op.drop_index('ix_core_recon_discrepancy_run')
        batch_op.drop_index('ix_core_recon_discrepancy_open')

    op.drop_table('core_recon_discrepancy')
    with op.batch_alter_table('core_recon_run', schema=None) as batch_op:
        batch_op.drop_index('ix_core_recon_run_channel_date')

    op.drop_table('core_recon_run')

