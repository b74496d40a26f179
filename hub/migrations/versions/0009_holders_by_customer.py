"""core accounts: holder history by customer (a customer's accounts, GET /customers/{id})

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 17:15:00.000000
"""
from __future__ import annotations

from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('core_account_holder_history', schema=None) as batch_op:
        batch_op.create_index('ix_core_account_holder_history_customer', ['customer_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('core_account_holder_history', schema=None) as batch_op:
        batch_op.drop_index('ix_core_account_holder_history_customer')
