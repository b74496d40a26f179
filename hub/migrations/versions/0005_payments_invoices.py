"""core payments and invoices: payments, refunds, allocations, account credit, prepaid entries, invoices

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 15:15:53.798667
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('core_payment',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('transaction_id', sa.String(length=64), nullable=False),
    sa.Column('out_trade_no', sa.String(length=64), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('refunded', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('received', 'partly_refunded', 'refunded', 'reversed')", name=op.f('ck_core_payment_status')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_core_payment_amount')),
    sa.CheckConstraint('refunded >= 0 AND refunded <= amount', name=op.f('ck_core_payment_refunded')),
    sa.ForeignKeyConstraint(['account_id'], ['core_account.id'], name=op.f('fk_core_payment_account_id_core_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_payment')),
    sa.UniqueConstraint('channel', 'transaction_id', name='uq_core_payment_channel_transaction')
    )
    with op.batch_alter_table('core_payment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_payment_account_id'), ['account_id'], unique=False)

    op.create_table('core_payment_refund',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('payment_id', sa.String(length=32), nullable=False),
    sa.Column('refund_id', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('from_credit', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('from_bills', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('from_prepaid', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('red_serial', sa.String(length=64), nullable=True),
    sa.Column('message_id', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('refund', 'reversal')", name=op.f('ck_core_payment_refund_kind')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_core_payment_refund_amount')),
    sa.ForeignKeyConstraint(['payment_id'], ['core_payment.id'], name=op.f('fk_core_payment_refund_payment_id_core_payment')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_payment_refund')),
    sa.UniqueConstraint('payment_id', 'refund_id', name='uq_core_payment_refund_payment_refund')
    )
    op.create_table('core_account_credit',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('payment_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('bill_id', sa.String(length=32), nullable=True),
    sa.Column('refund_row_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'overpayment') = (amount > 0)", name=op.f('ck_core_account_credit_sign')),
    sa.CheckConstraint("kind IN ('overpayment', 'applied', 'refund')", name=op.f('ck_core_account_credit_kind')),
    sa.ForeignKeyConstraint(['account_id'], ['core_account.id'], name=op.f('fk_core_account_credit_account_id_core_account')),
    sa.ForeignKeyConstraint(['bill_id'], ['core_bill.id'], name=op.f('fk_core_account_credit_bill_id_core_bill')),
    sa.ForeignKeyConstraint(['payment_id'], ['core_payment.id'], name=op.f('fk_core_account_credit_payment_id_core_payment')),
    sa.ForeignKeyConstraint(['refund_row_id'], ['core_payment_refund.id'], name=op.f('fk_core_account_credit_refund_row_id_core_payment_refund')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_account_credit'))
    )
    with op.batch_alter_table('core_account_credit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_account_credit_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_core_account_credit_payment_id'), ['payment_id'], unique=False)

    op.create_table('core_invoice',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('request_serial', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('scope', sa.String(length=8), nullable=False),
    sa.Column('reference_id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('original_invoice_id', sa.String(length=32), nullable=True),
    sa.Column('refund_row_id', sa.String(length=32), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('user_name_enc', sa.Text(), nullable=False),
    sa.Column('user_name_masked', sa.String(length=100), nullable=False),
    sa.Column('user_number_enc', sa.Text(), nullable=True),
    sa.Column('invoice_type', sa.String(length=32), nullable=True),
    sa.Column('invoice_number', sa.String(length=20), nullable=True),
    sa.Column('total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('total_tax', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('failure_reason', sa.Text(), nullable=True),
    sa.Column('pdf_url', sa.String(length=500), nullable=True),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'red') = (original_invoice_id IS NOT NULL)", name=op.f('ck_core_invoice_red_has_original')),
    sa.CheckConstraint("kind IN ('blue', 'red')", name=op.f('ck_core_invoice_kind')),
    sa.CheckConstraint("scope IN ('payment', 'bill')", name=op.f('ck_core_invoice_scope')),
    sa.CheckConstraint("status IN ('requested', 'issued', 'failed', 'reversed')", name=op.f('ck_core_invoice_status')),
    sa.ForeignKeyConstraint(['account_id'], ['core_account.id'], name=op.f('fk_core_invoice_account_id_core_account')),
    sa.ForeignKeyConstraint(['original_invoice_id'], ['core_invoice.id'], name=op.f('fk_core_invoice_original_invoice_id_core_invoice')),
    sa.ForeignKeyConstraint(['refund_row_id'], ['core_payment_refund.id'], name=op.f('fk_core_invoice_refund_row_id_core_payment_refund')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_invoice')),
    sa.UniqueConstraint('invoice_number', name=op.f('uq_core_invoice_invoice_number')),
    sa.UniqueConstraint('request_serial', name=op.f('uq_core_invoice_request_serial'))
    )
    with op.batch_alter_table('core_invoice', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_invoice_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_core_invoice_reference', ['scope', 'reference_id'], unique=False)

    op.create_table('core_payment_allocation',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('payment_id', sa.String(length=32), nullable=False),
    sa.Column('bill_id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('refund_row_id', sa.String(length=32), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'reversal') = (amount < 0)", name=op.f('ck_core_payment_allocation_sign')),
    sa.CheckConstraint("kind IN ('payment', 'credit', 'reversal')", name=op.f('ck_core_payment_allocation_kind')),
    sa.ForeignKeyConstraint(['account_id'], ['core_account.id'], name=op.f('fk_core_payment_allocation_account_id_core_account')),
    sa.ForeignKeyConstraint(['bill_id'], ['core_bill.id'], name=op.f('fk_core_payment_allocation_bill_id_core_bill')),
    sa.ForeignKeyConstraint(['payment_id'], ['core_payment.id'], name=op.f('fk_core_payment_allocation_payment_id_core_payment')),
    sa.ForeignKeyConstraint(['refund_row_id'], ['core_payment_refund.id'], name=op.f('fk_core_payment_allocation_refund_row_id_core_payment_refund')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_payment_allocation'))
    )
    with op.batch_alter_table('core_payment_allocation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_payment_allocation_bill_id'), ['bill_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_core_payment_allocation_payment_id'), ['payment_id'], unique=False)

    op.create_table('core_prepaid_entry',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('meter_id', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.String(length=32), nullable=False),
    sa.Column('payment_id', sa.String(length=32), nullable=False),
    sa.Column('refund_row_id', sa.String(length=32), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('balance_after', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(kind = 'top_up') = (amount > 0)", name=op.f('ck_core_prepaid_entry_sign')),
    sa.CheckConstraint("kind IN ('top_up', 'refund')", name=op.f('ck_core_prepaid_entry_kind')),
    sa.ForeignKeyConstraint(['account_id'], ['core_account.id'], name=op.f('fk_core_prepaid_entry_account_id_core_account')),
    sa.ForeignKeyConstraint(['meter_id'], ['core_meter.id'], name=op.f('fk_core_prepaid_entry_meter_id_core_meter')),
    sa.ForeignKeyConstraint(['payment_id'], ['core_payment.id'], name=op.f('fk_core_prepaid_entry_payment_id_core_payment')),
    sa.ForeignKeyConstraint(['refund_row_id'], ['core_payment_refund.id'], name=op.f('fk_core_prepaid_entry_refund_row_id_core_payment_refund')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_core_prepaid_entry'))
    )
    with op.batch_alter_table('core_prepaid_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_core_prepaid_entry_meter_id'), ['meter_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_core_prepaid_entry_payment_id'), ['payment_id'], unique=False)

    op.create_table('core_invoice_line',
    sa.Column('invoice_id', sa.String(length=32), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('tax_code', sa.String(length=19), nullable=False),
    sa.Column('unit', sa.String(length=10), nullable=False),
    sa.Column('quantity', sa.Numeric(precision=14, scale=3), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=14, scale=6), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('tax_rate', sa.Numeric(precision=5, scale=4), nullable=False),
    sa.Column('tax', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['core_invoice.id'], name=op.f('fk_core_invoice_line_invoice_id_core_invoice')),
    sa.PrimaryKeyConstraint('invoice_id', 'line_no', name='pk_core_invoice_line')
    )


def downgrade() -> None:
    op.drop_table('core_invoice_line')
    with op.batch_alter_table('core_prepaid_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_prepaid_entry_payment_id'))
        batch_op.drop_index(batch_op.f('ix_core_prepaid_entry_meter_id'))

    op.drop_table('core_prepaid_entry')
    with op.batch_alter_table('core_payment_allocation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_payment_allocation_payment_id'))
        batch_op.drop_index(batch_op.f('ix_core_payment_allocation_bill_id'))

    op.drop_table('core_payment_allocation')
    with op.batch_alter_table('core_invoice', schema=None) as batch_op:
        batch_op.drop_index('ix_core_invoice_reference')
        batch_op.drop_index(batch_op.f('ix_core_invoice_account_id'))

    op.drop_table('core_invoice')
    with op.batch_alter_table('core_account_credit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_account_credit_payment_id'))
        batch_op.drop_index(batch_op.f('ix_core_account_credit_account_id'))

    op.drop_table('core_account_credit')
    op.drop_table('core_payment_refund')
    with op.batch_alter_table('core_payment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_core_payment_account_id'))

    op.drop_table('core_payment')
